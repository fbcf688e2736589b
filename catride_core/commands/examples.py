"""``catride examples``: retrieval examples of one model, the rankings of a few test queries before and after attacks."""

from __future__ import annotations

from pathlib import Path

import click
import pandas as pd
import torch

from catride_core.artifacts.checkpoints import load_checkpoint
from catride_core.artifacts.files import ensure_writable, save_figure
from catride_core.artifacts.prepared import load_prepared
from catride_core.attacks.examples import (
    CANDIDATE_ATTACK,
    QUERY_ATTACK,
    attacked_examples,
    gather_images,
)
from catride_core.commands.attack import attack_budget, check_target_counts
from catride_core.commands.common import (
    ADHOC_PARAMS_OPTION,
    DATA_OPTION,
    SET_OPTION,
    echo_table,
    stage,
    start,
)
from catride_core.data.prepared import build_dataset, loader_workers
from catride_core.names import ATTACK_SCORES
from catride_core.report import examples as example_figures
from catride_core.report.curves import eps_label


@stage
@ADHOC_PARAMS_OPTION
@SET_OPTION
@DATA_OPTION
@click.option("--checkpoint", type=click.Path(dir_okay=False), required=True, help="model to attack")
@click.option("--ranking", "ranking_path", type=click.Path(dir_okay=False), required=True,
              help="PNG to write: each query's top-k clean and under ES")
@click.option("--targets", "targets_path", type=click.Path(dir_okay=False), required=True,
              help="PNG to write: a target query's top-k before and after CA+ perturbs a candidate")
def examples(params_path: str | None, overrides: tuple[str, ...], data_dir: str, checkpoint: str, ranking_path: str,
             targets_path: str) -> None:
    """Retrieval examples of a model: a few spread test queries ranked before and after ES, and CA+'s target lists.

    The attack stage's runner and budget (docs/method.md section 9).
    """
    params, device = start(params_path, overrides)
    ensure_writable(ranking_path, targets_path)
    cfg = params.report
    data = load_prepared(data_dir)
    model, _ = load_checkpoint(checkpoint, device, data.meta)
    test_set = build_dataset(data, "test", train=False)
    budget = attack_budget(params.attack)
    check_target_counts(params_path, (QUERY_ATTACK, CANDIDATE_ATTACK), budget, len(test_set))
    found = attacked_examples(model, test_set, torch.as_tensor(test_set.labels), budget, params.base.seed,
                              cfg.example_queries, cfg.example_top_k,
                              num_workers=loader_workers(test_set, params.base.num_workers))
    name, budget = Path(checkpoint).stem, f"eps {eps_label(params.attack.eps)}, {params.attack.steps} steps"
    queries, lists = found.queries, found.query_rankings
    save_figure(ranking_path, example_figures.query_grid(
        gather_images(found.images, queries), found.query_adversarial, gather_images(found.images, lists.before),
        gather_images(found.images, lists.after), lists, found.labels, queries,
        f"{name}: {QUERY_ATTACK.upper()} ({budget})", cfg.example_amplify))
    moved = found.candidate_rankings
    save_figure(targets_path, example_figures.candidate_grid(
        gather_images(found.images, found.targets), gather_images(found.images, queries), found.candidate_adversarial,
        gather_images(found.images, moved.rankings.before), gather_images(found.images, moved.rankings.after),
        moved, found.labels, queries, found.targets, f"{name}: {ATTACK_SCORES[CANDIDATE_ATTACK][0]} ({budget})",
        cfg.example_amplify))
    echo_table(pd.DataFrame({
        "query": queries.tolist(),
        "top-1 correct, clean": lists.correct_before[:, 0].tolist(),
        "under ES": lists.correct_after[:, 0].tolist(),
        "CA+ candidate place": [f"{int(a)} -> {int(b)}" for a, b in zip(moved.rank_before, moved.rank_after)],
    }))
