"""``catride adaptive``: the adaptive evaluation of one model (docs/method.md section 11) and its sanity checks."""

from __future__ import annotations

from itertools import pairwise
from pathlib import Path
from typing import Any

import click
import numpy as np
import pandas as pd
import torch

from catride_core.artifacts.checkpoints import load_checkpoint
from catride_core.artifacts.files import (
    SCORE_DECIMALS,
    ensure_folder_writable,
    output_folder,
    write_csv,
    write_json,
)
from catride_core.artifacts.prepared import load_prepared
from catride_core.attacks.adaptive import (
    AdaptiveBudget,
    AdaptiveResult,
    adaptive_attacks,
)
from catride_core.attacks.apgd import adaptive_pgd
from catride_core.attacks.base import Gallery
from catride_core.attacks.queries import spread_first
from catride_core.attacks.runner import build_attack
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
from catride_core.data.prepared import build_dataset
from catride_core.errors import ParamsError
from catride_core.models.embedding import embed, eval_mode
from catride_core.names import ERS_ATTACKS
from catride_core.retrieval.robustness import ROBUST_DIRECTION

#: every file the adaptive stage may write in its folder
ADAPTIVE_FILES = frozenset({"summary.json", *(f"{name}.csv" for name in ERS_ATTACKS)})
#: the unbounded-budget check passes where ES leaves R@1 and CA+ leaves its candidate's prank at most this (%)
UNBOUNDED_CEILING = 10.0
#: the budgets of the monotonicity check, as fractions of attack.eps (then adaptive.unbounded_eps)
MONOTONE_FRACTIONS = (0.25, 0.5, 1.0)


def per_query_table(result: AdaptiveResult) -> pd.DataFrame:
    """One row per attacked query: its gallery slot, and every score's clean value, each run's and the adaptive one."""
    columns = {"index": result.per_query["index"]}
    columns |= {key: values for key, values in result.per_query.items() if key not in ("index", "targets")}
    return pd.DataFrame(columns)


def _mean(values: np.ndarray) -> float:
    return round(float(np.mean(values)), SCORE_DECIMALS)


def attack_summary(result: AdaptiveResult) -> dict[str, Any]:
    """An attack's runs, gradient norm and every score's mean per run."""
    scores = sorted({key.split("/")[0] for key in result.per_query if key.endswith("/adaptive")})
    return {
        "runs": list(result.runs),
        "gradient_norm": result.gradient_norm,
        "means": {score: {run: _mean(result.per_query[f"{score}/{run}"]) for run in ("clean", *result.runs, "adaptive")}
                  for score in scores},
        "never_better_than_pgd": all(
            bool((ROBUST_DIRECTION[score]
                  * (result.per_query[f"{score}/adaptive"] - result.per_query[f"{score}/pgd"]) <= 1e-9).all())
            for score in scores),
    }


def sanity_checks(model, images, labels, budget, steps: int, n_queries: int, unbounded_eps: float,
                  seed: int) -> dict[str, Any]:
    """(a) an unbounded ES and CA+ must break retrieval; (b) ES:R under APGD must not rise with eps."""
    device = next(model.parameters()).device
    order = spread_first(len(labels), min(n_queries, len(labels)))
    pixels = torch.stack([images[int(i)][0] for i in order[:n_queries]]).to(device)
    ordered = torch.utils.data.Subset(images, order.tolist())
    with eval_mode(model):
        gallery = Gallery(embed(model, ordered, budget.batch_size, device), labels[order].to(device))
        queries = torch.arange(len(pixels), device=device)

        def attacked(name: str, eps: float) -> dict[str, float]:
            attack = build_attack(name, budget)
            targets = attack.select_targets(gallery, queries, torch.Generator().manual_seed(seed))
            found = adaptive_pgd(model, pixels, attack.losses(gallery, queries, targets), eps, steps).images
            with torch.no_grad():
                return {s: float(v.mean()) for s, v in attack.score(gallery, queries, targets, model(found)).items()}

        unbounded = {"ES:R": attacked("es", unbounded_eps)["ES:R"], "CA+": attacked("ca_plus", unbounded_eps)["CA+"]}
        budgets = [fraction * budget.eps for fraction in MONOTONE_FRACTIONS] + [unbounded_eps]
        curve = [attacked("es", eps)["ES:R"] for eps in budgets]
    tolerance = 100.0 / len(pixels)  # one query
    return {
        "unbounded": {"eps": unbounded_eps, "ceiling": UNBOUNDED_CEILING,
                      **{key: round(value, 4) for key, value in unbounded.items()},
                      "passed": all(value <= UNBOUNDED_CEILING for value in unbounded.values())},
        "monotone": {"eps": [round(eps, 6) for eps in budgets], "ES:R": [round(v, 4) for v in curve],
                     "passed": all(later <= earlier + tolerance for earlier, later in pairwise(curve))},
    }


@stage
@ADHOC_PARAMS_OPTION
@SET_OPTION
@DATA_OPTION
@click.option("--checkpoint", type=click.Path(dir_okay=False), required=True, help="model to evaluate")
@click.option("--surrogate", type=click.Path(dir_okay=False), default=None,
              help="model whose perturbations are transferred (ES, CA+/-, QA+/-); none: no transfer run")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default=None,
              help="folder to write (a new one, or one this command wrote): <attack>.csv per attack (per query, "
                   "every run) and summary.json (default: print the table only)")
@PROGRESS_OPTION
def adaptive(params_path: str | None, overrides: tuple[str, ...], data_dir: str, checkpoint: str,
             surrogate: str | None, out_dir: str | None, progress: bool) -> None:
    """Attack a model with each ERS attack of attack.names as hard as a careful reviewer would (docs/method.md 11).

    On ``adaptive.queries`` spread test images: RobRank's PGD (the attack
    stage's code), APGD, seeded restarts and, with ``--surrogate``, transfer;
    per query the worst for the model. Then the sanity checks: an unbounded
    budget must break retrieval, and ES:R must not rise with eps.
    """
    params, device = start(params_path, overrides)
    if out_dir is not None:
        ensure_folder_writable(out_dir, ADAPTIVE_FILES)
    cfg = params.adaptive
    names = [name for name in params.attack.names if name in ERS_ATTACKS]
    if not names:
        raise ParamsError(f"{params_path or 'params'}: attack.names: {params.attack.names} holds none of the nine ERS "
                          "attacks, which the adaptive evaluation runs harder")
    data = load_prepared(data_dir)
    budget = attack_budget(params.attack)
    model, _ = load_checkpoint(checkpoint, device, data.meta)
    transferred = None if surrogate is None else load_checkpoint(surrogate, device, data.meta)[0]
    test_set = build_dataset(data, "test", train=False)
    labels = torch.as_tensor(test_set.labels)
    check_target_counts(params_path, names, budget, len(test_set))
    results = adaptive_attacks(names, model, test_set, labels, budget,
                               AdaptiveBudget(cfg.steps, cfg.restarts), params.base.seed, cfg.queries,
                               surrogate=transferred, progress=progress)
    summary = {
        "queries": min(cfg.queries, len(test_set)), "steps": cfg.steps, "restarts": cfg.restarts,
        "surrogate": None if surrogate is None else Path(surrogate).stem,
        "attacks": {name: attack_summary(result) for name, result in results.items()},
        "checks": sanity_checks(model, test_set, labels, budget, cfg.steps, cfg.queries,
                                cfg.unbounded_eps, params.base.seed),
    }
    summary["checks"]["never_better_than_pgd"] = {"passed": all(a["never_better_than_pgd"]
                                                                for a in summary["attacks"].values())}
    if out_dir is not None:
        with output_folder(out_dir, ADAPTIVE_FILES) as folder:
            for name, result in results.items():
                write_csv(folder / f"{name}.csv", per_query_table(result), float_format=None)
            write_json(folder / "summary.json", summary)
    rows = [{"attack": name, "score": score, **means, "grad norm": round(attack["gradient_norm"], 5)}
            for name, attack in summary["attacks"].items() for score, means in attack["means"].items()]
    echo_table(pd.DataFrame(rows))
    for check, found in summary["checks"].items():
        click.echo(f"check {check}: {'passed' if found['passed'] else 'FAILED'}")
