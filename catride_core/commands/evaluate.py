"""``catride evaluate``: benign retrieval metrics and collapse diagnostics of one model on the test split."""

from __future__ import annotations

import click
import pandas as pd

from catride_core.artifacts.checkpoints import load_checkpoint
from catride_core.artifacts.files import (
    SCORE_DECIMALS,
    ensure_writable,
    rounded,
    write_json,
)
from catride_core.artifacts.prepared import load_prepared
from catride_core.commands.common import (
    ADHOC_PARAMS_OPTION,
    DATA_OPTION,
    SET_OPTION,
    echo_table,
    stage,
    start,
)
from catride_core.data.prepared import build_dataset, loader_workers
from catride_core.distributed import distributed
from catride_core.errors import ParamsError
from catride_core.retrieval.bootstrap import mean_intervals
from catride_core.retrieval.evaluation import benign_metrics


@stage
@ADHOC_PARAMS_OPTION
@SET_OPTION
@DATA_OPTION
@click.option("--checkpoint", type=click.Path(dir_okay=False), required=True, help="model to evaluate")
@click.option("--metrics", "metrics_path", type=click.Path(dir_okay=False), default=None,
              help="metrics JSON to write (default: print the table only)")
def evaluate(params_path: str | None, overrides: tuple[str, ...], data_dir: str, checkpoint: str,
             metrics_path: str | None) -> None:
    """Benign retrieval metrics of a model on the test split: R@K, mAP, mAP@R, mAP@10, NMI (in %), collapse diagnostics.

    The means over the test queries get percentile bootstrap intervals (``benign_low``, ``benign_high``)
    with the resamples and confidence of the ``robustness`` params.

    Runs on any saved checkpoint and prepared data, inside the pipeline or not
    (README "Ad-hoc use"). Under ``torchrun --nproc_per_node N`` the work is
    shared by N processes (README "Several processes").
    """
    params, device = start(params_path, overrides)
    if metrics_path is not None:
        ensure_writable(metrics_path)
    cfg = params.evaluate
    data = load_prepared(data_dir)
    with distributed(device) as world:
        model, _ = load_checkpoint(checkpoint, device, data.meta)
        test_set = build_dataset(data, "test", train=False)
        too_deep = [k for k in cfg.recall_at if k > len(test_set) - 1]
        if too_deep:
            raise ParamsError(f"{params_path or 'params'}: evaluate.recall_at: R@{too_deep[0]} asked of a gallery of "
                              f"{len(test_set) - 1} items (the test split without the query)")
        found = benign_metrics(model, test_set, cfg.batch_size, device, cfg.recall_at, cfg.block_size,
                               cfg.diagnostic_inverse_temperature, params.base.seed, world, cfg.nmi_seeds,
                               num_workers=loader_workers(test_set, params.base.num_workers))
    if found is None:
        return
    bounds = mean_intervals(found.per_query, params.base.seed, params.robustness.resamples,
                            params.robustness.confidence)
    metrics = {key: None if value is None else round(float(value), SCORE_DECIMALS) for key, value in found.metrics.items()}
    if metrics_path is not None:
        write_json(metrics_path, metrics | {f"benign_{end}": rounded({name: bound[i] for name, bound in bounds.items()})
                                            for i, end in enumerate(("low", "high"))})
    shown = {key: value for key, value in metrics.items() if value is not None}
    echo_table(pd.DataFrame({"metric": list(shown), "value": list(shown.values())}), decimals=2)
