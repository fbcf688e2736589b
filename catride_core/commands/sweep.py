"""``catride sweep``: robustness curves of one model, the attacks of report.sweep_attacks at every eps of report.sweep_eps."""

from __future__ import annotations

import click
import torch

from catride_core.artifacts.checkpoints import load_checkpoint
from catride_core.artifacts.files import ensure_writable, write_csv
from catride_core.artifacts.prepared import load_prepared
from catride_core.attacks.sweep import eps_sweep, wide
from catride_core.commands.attack import attack_budget, check_target_counts
from catride_core.commands.common import (
    ADHOC_PARAMS_OPTION,
    DATA_OPTION,
    PROGRESS_OPTION,
    SET_OPTION,
    echo_table,
    stage,
    start,
)
from catride_core.data.prepared import build_dataset, loader_workers


@stage
@ADHOC_PARAMS_OPTION
@SET_OPTION
@DATA_OPTION
@click.option("--checkpoint", type=click.Path(dir_okay=False), required=True, help="model to attack")
@click.option("--out", "out_path", type=click.Path(dir_okay=False), default=None,
              help="CSV to write, one row per eps, one column per score (default: print the table only)")
@PROGRESS_OPTION
def sweep(params_path: str | None, overrides: tuple[str, ...], data_dir: str, checkpoint: str, out_path: str | None,
          progress: bool) -> None:
    """Robustness curves of a model: report.sweep_attacks at each eps of report.sweep_eps, on a few test images.

    The attack stage's runner and budget with only eps changed, on
    report.sweep_queries test images spread over the split (docs/method.md section 9).
    """
    params, device = start(params_path, overrides)
    if out_path is not None:
        ensure_writable(out_path)
    cfg = params.report
    data = load_prepared(data_dir)
    model, _ = load_checkpoint(checkpoint, device, data.meta)
    test_set = build_dataset(data, "test", train=False)
    budget = attack_budget(params.attack, eps=max(cfg.sweep_eps))
    check_target_counts(params_path, cfg.sweep_attacks, budget, len(test_set))
    points = eps_sweep(cfg.sweep_attacks, model, test_set, torch.as_tensor(test_set.labels), budget, cfg.sweep_eps,
                       params.base.seed, cfg.sweep_queries, progress,
                       num_workers=loader_workers(test_set, params.base.num_workers))
    table = wide(points)
    if out_path is not None:
        write_csv(out_path, table, float_format=None)  # every digit: eps is 8/255 exactly
    echo_table(table)
