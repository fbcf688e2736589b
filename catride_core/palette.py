"""One colour per model, the same in every figure: tab10's colours in the order of ``names.MODELS``."""

from __future__ import annotations

from collections.abc import Sequence

from catride_core.names import MODELS


def model_colours(models: Sequence[str]) -> dict[str, str]:
    """Model name -> its colour (a hex string), fixed by the name's place in ``names.MODELS``.

    A model keeps its colour whichever subset of models a figure shows.

    Raises:
        ValueError: a name that is not one of ``names.MODELS``.
    """
    # imported here: matplotlib takes over a second to import, and only the figures need it
    from matplotlib import colormaps
    from matplotlib.colors import to_hex

    unknown = [model for model in models if model not in MODELS]
    if unknown:
        raise ValueError(f"unknown model {unknown[0]!r}; models are {list(MODELS)}")
    colours = colormaps["tab10"].colors
    return {model: to_hex(colours[MODELS.index(model) % len(colours)]) for model in models}
