"""``catride robustness``: ERS and ARS of one model from its attack results, with bootstrap intervals; with
``--adaptive``, also from its adaptive evaluation (docs/method.md section 11)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import click
import numpy as np
import pandas as pd

from catride_core.artifacts.files import (
    SCORE_DECIMALS,
    ensure_writable,
    read_csv,
    read_json,
    write_csv,
    write_json,
)
from catride_core.commands.common import PARAMS_OPTION, stage
from catride_core.config import load_params
from catride_core.errors import ArtifactError
from catride_core.names import ATTACK_SCORES, ERS_ATTACKS, SCORES
from catride_core.retrieval.bootstrap import (
    Replicates,
    bootstrap_replicates,
    intervals,
    is_different,
    percentile_interval,
    resample_indices,
    resampled_means,
)
from catride_core.retrieval.robustness import (
    ROBUST_DIRECTION,
    attack_result_problem,
    ers_reference,
    per_query_problem,
    robustness_summary,
)


def read_attack(folder: Path, name: str) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """An attack's saved result (``<name>.json``) and its per-query columns (``<name>.csv``), both checked."""
    path = folder / f"{name}.json"
    result = read_json(path)
    problem = attack_result_problem(name, result)
    if problem:
        raise ArtifactError(f"{path}: {problem}")
    path = folder / f"{name}.csv"
    columns = ["index", *(f"{score}/{side}" for side in ("clean", "adversarial") for score in ATTACK_SCORES[name])]
    table = read_csv(path, columns)
    per_query = {column: table[column].to_numpy() for column in columns}
    problem = per_query_problem(result, per_query)
    if problem:
        raise ArtifactError(f"{path}: {problem}")
    return result, per_query


def read_attacks(folder: Path, names: list[str]) -> tuple[dict[str, dict[str, float]], dict[str, dict[str, np.ndarray]], int]:
    """The clean and adversarial means and per-query values of every named attack, and Q, the same for all."""
    means: dict[str, dict[str, float]] = {"clean": {}, "adversarial": {}}
    per_query: dict[str, dict[str, np.ndarray]] = {"clean": {}, "adversarial": {}}
    n_queries: dict[str, int] = {}
    for name in names:
        result, table = read_attack(folder, name)
        n_queries[name] = result["n_queries"]
        for side, values in means.items():
            values.update(result[side])
            per_query[side].update({score: table[f"{score}/{side}"] for score in result[side]})
    if len(set(n_queries.values())) > 1:
        raise ArtifactError(f"{folder}: the attacks were run on different numbers of queries {n_queries}")
    return means, per_query, next(iter(n_queries.values()))


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, SCORE_DECIMALS)


def replicates_table(replicates: Replicates) -> pd.DataFrame:
    """One row per resample: ERS, ARS (empty where None), the adversarial scores in ``names.SCORES`` order, then
    ERS:ref and the reference-rule scores where they were attacked."""
    scores = [score for score in SCORES if score in replicates.adversarial]
    references = [score for score in replicates.adversarial if score not in SCORES]
    return pd.DataFrame({
        "ERS": np.nan if replicates.ers is None else replicates.ers,
        "ARS": np.nan if replicates.ars is None else replicates.ars,
        **{score: replicates.adversarial[score] for score in scores},
        **({} if replicates.ers_reference is None else {"ERS:ref": replicates.ers_reference}),
        **{score: replicates.adversarial[score] for score in references},
    })


def bounds_of(key: str, bounds: dict[str, tuple[float, float] | None]) -> dict[str, float | None]:
    """``<key>_low`` and ``<key>_high``, rounded; None for a composite that is None."""
    interval = bounds[key] or (None, None)
    return {f"{key}_low": _rounded(interval[0]), f"{key}_high": _rounded(interval[1])}


def read_adaptive(folder: Path, names: list[str]) -> tuple[dict[str, dict[str, np.ndarray]], dict[str, Any]]:
    """The adaptive stage's per-query clean, ``pgd`` and ``adaptive`` values of the scores of the ERS attacks among
    ``names``, and its summary."""
    summary = read_json(folder / "summary.json")
    per_query: dict[str, dict[str, np.ndarray]] = {"clean": {}, "pgd": {}, "adaptive": {}}
    lengths = set()
    for name in (name for name in names if name in ERS_ATTACKS):
        columns = ["index", *(f"{score}/{run}" for score in ATTACK_SCORES[name] for run in per_query)]
        table = read_csv(folder / f"{name}.csv", columns)
        lengths.add(len(table))
        for score in ATTACK_SCORES[name]:
            for run, values in per_query.items():
                column = table[f"{score}/{run}"].to_numpy(dtype=np.float64)
                if not np.isfinite(column).all():
                    raise ArtifactError(f"{folder / f'{name}.csv'}: column {score}/{run} holds values that are not finite")
                values[score] = column
    if len(lengths) > 1:
        raise ArtifactError(f"{folder}: the attacks were run on different numbers of queries {sorted(lengths)}")
    return per_query, summary


def adaptive_metrics(folder: Path, names: list[str], benign: dict[str, float], seed: int, resamples: int,
                     confidence: float) -> dict[str, Any]:
    """ERS and ARS of the adaptive values and of RobRank's PGD on the same queries, with bootstrap intervals;
    the scores where the adaptive value is worse for the model by more than the interval of the difference;
    and the adaptive stage's checks."""
    per_query, summary = read_adaptive(folder, names)
    queries = len(next(iter(per_query["clean"].values())))
    indices = resample_indices(seed, queries, resamples)
    clean = {score: float(values.mean()) for score, values in per_query["clean"].items()}
    composites: dict[str, dict[str, float | None]] = {}
    for run in ("adaptive", "pgd"):
        means = {score: float(values.mean()) for score, values in per_query[run].items()}
        point = robustness_summary(clean, means, benign["R@1"], benign["spread"])
        bounds = intervals(bootstrap_replicates(per_query["clean"], per_query[run], indices, benign["R@1"],
                                                benign["spread"]), confidence)
        composites[run] = {"scores": {score: _rounded(value) for score, value in means.items()}}
        for key in ("ERS", "ARS"):
            composites[run] |= {key: _rounded(point[key]), **bounds_of(key, bounds)}
    # how much worse for the model each score is under the adaptive attack, with a paired bootstrap interval
    gaps = {score: ROBUST_DIRECTION[score] * (per_query["pgd"][score] - per_query["adaptive"][score])
            for score in per_query["pgd"]}
    resampled = resampled_means(gaps, indices)
    overestimated = {}
    for score, values in gaps.items():
        low, high = percentile_interval(resampled[score], confidence)
        if is_different(low, high) and low > 0:
            overestimated[score] = {"gap": _rounded(float(values.mean())), "low": _rounded(low), "high": _rounded(high)}
    adaptive = composites["adaptive"]
    return {
        **{f"{key}:adaptive{end}": adaptive[f"{key}{end}"] for key in ("ERS", "ARS") for end in ("", "_low", "_high")},
        "adaptive": {
            "queries": queries, "scores": adaptive["scores"],
            "pgd_same_queries": composites["pgd"],
            "overestimated": overestimated,
            "checks": summary["checks"],
            "gradient_norm": {name: attack["gradient_norm"] for name, attack in summary["attacks"].items()},
        },
    }


@stage
@PARAMS_OPTION
@click.option("--benign", "benign_path", type=click.Path(dir_okay=False), required=True, help="the model's evaluate metrics JSON")
@click.option("--attacks", "attacks_dir", type=click.Path(file_okay=False), required=True, help="folder of the model's attack results")
@click.option("--out", "out_path", type=click.Path(dir_okay=False), required=True, help="robustness metrics JSON to write")
@click.option("--bootstrap", "bootstrap_path", type=click.Path(dir_okay=False), required=True,
              help="CSV to write: ERS, ARS and every adversarial score in each bootstrap resample")
@click.option("--adaptive", "adaptive_dir", type=click.Path(file_okay=False), default=None,
              help="folder of the model's adaptive evaluation: adds ERS:adaptive, ARS:adaptive and its checks")
def robustness(params_path: str, benign_path: str, attacks_dir: str, out_path: str, bootstrap_path: str,
               adaptive_dir: str | None) -> None:
    """ERS and ARS (docs/method.md section 6) of one model from its attack results, with bootstrap intervals;
    ERS:ref as well where gtm_ref, es_ref and ltm_ref were attacked; with ``--adaptive``, ERS and ARS of the
    adaptive evaluation (section 11) beside those of RobRank's PGD on the same queries, and its checks."""
    params = load_params(params_path)
    ensure_writable(out_path, bootstrap_path)
    benign = read_json(benign_path)
    for key in ("R@1", "spread"):
        if not isinstance(benign.get(key), (int, float)) or not math.isfinite(benign[key]):
            raise ArtifactError(f"{benign_path}: {key!r} is missing or not a finite number")
    means, per_query, queries = read_attacks(Path(attacks_dir), params.attack.names)
    summary = robustness_summary(means["clean"], means["adversarial"], benign["R@1"], benign["spread"])
    if summary["ERS"] is not None and ers_reference(means["adversarial"]) is not None:
        summary["ERS:ref"] = ers_reference(means["adversarial"])
    cfg, seed = params.robustness, params.base.seed
    replicates = bootstrap_replicates(per_query["clean"], per_query["adversarial"],
                                      resample_indices(seed, queries, cfg.resamples), benign["R@1"], benign["spread"])
    bounds = intervals(replicates, cfg.confidence)
    adaptive = ({} if adaptive_dir is None else
                adaptive_metrics(Path(adaptive_dir), params.attack.names, benign, seed, cfg.resamples, cfg.confidence))
    write_csv(bootstrap_path, replicates_table(replicates))
    write_json(out_path, {
        **{key: _rounded(value) for key, value in summary.items()},
        **{key: value for name in summary for key, value in bounds_of(name, bounds).items()},
        "adversarial": means["adversarial"], "clean": means["clean"],
        **{f"adversarial_{end}": {score: _rounded(bounds[score][i]) for score in means["adversarial"]}
           for i, end in enumerate(("low", "high"))},
        "bootstrap": {"resamples": cfg.resamples, "confidence": cfg.confidence, "seed": seed, "queries": queries},
        **adaptive,
    })
    click.echo(", ".join(f"{key} n/a" if value is None else f"{key} {value:.2f} [{bounds[key][0]:.2f}, {bounds[key][1]:.2f}]"
                         for key, value in summary.items()))
    if adaptive:
        click.echo(", ".join(f"{key}:adaptive n/a" if adaptive[f"{key}:adaptive"] is None else
                             f"{key}:adaptive {adaptive[f'{key}:adaptive']:.2f} [{adaptive[f'{key}:adaptive_low']:.2f}, "
                             f"{adaptive[f'{key}:adaptive_high']:.2f}]" for key in ("ERS", "ARS")))
