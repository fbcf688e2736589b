"""One colour per model, the same in every figure: tab10's colours in the order of ``names.MODELS``."""

from __future__ import annotations

from collections.abc import Sequence

from catride_core.names import MODELS

#: matplotlib's "tab10" colours, in order (written out: matplotlib takes a second to import)
TAB10 = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf")
#: model -> its colour in every figure: fixed by the model's place in ``names.MODELS``, so a run of any
#: subset of models colours each one as the full run does
MODEL_COLOURS: dict[str, str] = {model: TAB10[i % len(TAB10)] for i, model in enumerate(MODELS)}


def model_colours(models: Sequence[str]) -> dict[str, str]:
    """Model name -> its colour (a hex string), fixed by the name's place in ``names.MODELS``.

    Raises:
        ValueError: a name that is not one of ``names.MODELS``.
    """
    unknown = [model for model in models if model not in MODELS]
    if unknown:
        raise ValueError(f"unknown model {unknown[0]!r}; models are {list(MODELS)}")
    return {model: MODEL_COLOURS[model] for model in models}
