"""``catride attack``: every ranking attack of ``attack.names`` on one model, in one process (or several under torchrun)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import click
import pandas as pd
import torch

from catride_core.artifacts.checkpoints import load_checkpoint
from catride_core.artifacts.files import (
    ensure_folder_writable,
    output_folder,
    rounded,
    save_torch,
    write_csv,
    write_json,
)
from catride_core.artifacts.prepared import load_prepared
from catride_core.attacks.base import AttackBudget
from catride_core.attacks.candidate_query import (
    CandidateAttack,
    QueryAttack,
    target_pool,
)
from catride_core.attacks.runner import AttackResult, build_attack, run_attacks
from catride_core.commands.common import (
    ADHOC_PARAMS_OPTION,
    DATA_OPTION,
    PROGRESS_OPTION,
    SET_OPTION,
    echo_table,
    stage,
    start,
)
from catride_core.config import AttackParams, resolved
from catride_core.data.prepared import build_dataset, loader_workers
from catride_core.distributed import distributed
from catride_core.errors import ParamsError
from catride_core.names import ATTACK_SCORES, ATTACKS

#: every file the attack stage may write in its folder, the only ones it replaces or removes there
ATTACK_FILES = frozenset(f"{name}.{kind}" for name in ATTACKS for kind in ("json", "csv", "pt"))


def per_query_table(result: AttackResult) -> pd.DataFrame:
    """One row per attacked image: its gallery slot, its targets, and every score clean and adversarial."""
    columns = {"index": result.per_query["index"]}
    targets = result.per_query["targets"]
    columns |= {f"target_{k}": targets[:, k] for k in range(targets.shape[1])}
    columns |= {key: values for key, values in result.per_query.items() if key not in ("index", "targets")}
    return pd.DataFrame(columns)


def attack_budget(cfg: AttackParams, eps: float | None = None) -> AttackBudget:
    """The PGD budget and target counts of the ``attack`` params section (the attack, sweep and examples stages).

    ``eps`` replaces ``attack.eps`` (which is then not read: the sweep's stage does not depend on it).
    """
    return AttackBudget(eps=cfg.eps if eps is None else eps, step_size=cfg.step_size, steps=cfg.steps, random_start=cfg.random_start,
                        batch_size=cfg.batch_size, candidates_per_query=cfg.candidates_per_query,
                        queries_per_candidate=cfg.queries_per_candidate)


def check_target_counts(params_path: str | None, names: Sequence[str], budget: AttackBudget, n_gallery: int) -> None:
    """Refuse, before attacking, a W or M larger than the distinct targets the gallery can give each attacked item.

    Raises:
        ParamsError: naming ``attack.queries_per_candidate`` or ``attack.candidates_per_query``.
    """
    for name in names:
        attack = build_attack(name, budget)
        if not isinstance(attack, CandidateAttack | QueryAttack):
            continue
        pool = target_pool(attack.raise_rank, n_gallery)
        if attack.target_count > pool:
            key = "queries_per_candidate" if isinstance(attack, CandidateAttack) else "candidates_per_query"
            shown = ATTACK_SCORES[name][0]
            source = (f"the gallery holds {pool} other items" if attack.raise_rank else
                      f"{shown} draws them from the top-1% of the gallery: {pool} item{'s' * (pool > 1)} of {n_gallery}")
            raise ParamsError(f"{params_path or 'params'}: attack.{key}: {attack.target_count} distinct targets for "
                              f"each item {shown} attacks, but {source}")


def results_table(results: dict[str, AttackResult]) -> pd.DataFrame:
    """One row per score: the attack, its clean and adversarial means over the attacked queries."""
    return pd.DataFrame([{"attack": name, "score": score, "clean": result.clean[score], "adversarial": value,
                          "queries": result.n_queries}
                         for name, result in results.items() for score, value in result.adversarial.items()])


@stage
@ADHOC_PARAMS_OPTION
@SET_OPTION
@DATA_OPTION
@click.option("--checkpoint", type=click.Path(dir_okay=False), required=True, help="model to attack")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default=None,
              help="folder to write (a new one, or one an attack wrote), per attack: <name>.json (means), <name>.csv "
                   "(per query), <name>.pt (images) (default: print the table only)")
@PROGRESS_OPTION
def attack(params_path: str | None, overrides: tuple[str, ...], data_dir: str, checkpoint: str, out_dir: str | None,
           progress: bool) -> None:
    """Run every attack of attack.names (docs/method.md section 5) on the test images of a model.

    Runs on any saved checkpoint and prepared data, inside the pipeline or not
    (README "Ad-hoc use"). Under ``torchrun --nproc_per_node N`` the work is
    shared by N processes (README "Several processes").
    """
    params, device = start(params_path, overrides)
    if out_dir is not None:
        ensure_folder_writable(out_dir, ATTACK_FILES)
    cfg = params.attack
    data = load_prepared(data_dir)
    budget = attack_budget(cfg)
    with distributed(device) as world:
        model, _ = load_checkpoint(checkpoint, device, data.meta)
        test_set = build_dataset(data, "test", train=False)
        check_target_counts(params_path, cfg.names, budget, len(test_set))
        results = run_attacks(cfg.names, model, test_set, torch.as_tensor(test_set.labels), budget, params.base.seed,
                              max_queries=cfg.max_queries, save_images=cfg.save_images, progress=progress, world=world,
                              num_workers=loader_workers(test_set, params.base.num_workers))
    if not world.is_main:
        return
    if out_dir is not None:
        write_results(out_dir, results, resolved(params, "attack")["attack"])
    echo_table(results_table(results))
    if out_dir is not None:
        click.echo(f"-> {Path(out_dir)}")


def write_results(out_dir: str, results: dict[str, AttackResult], params: dict) -> None:
    """The attack stage's folder: per attack its means (JSON), per-query values (CSV) and kept images."""
    with output_folder(out_dir, ATTACK_FILES) as folder:
        for name, result in results.items():
            write_json(folder / f"{name}.json", {
                "attack": name, "n_queries": result.n_queries,
                "clean": rounded(result.clean), "adversarial": rounded(result.adversarial), "params": params,
            })
            write_csv(folder / f"{name}.csv", per_query_table(result), float_format=None)
            if result.images is not None:
                save_torch(folder / f"{name}.pt", result.images)
