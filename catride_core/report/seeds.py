"""The comparison under several seeds: runs read from ``dvc exp show --json``, summarised as mean and spread.

The seeds are run by DVC's experiment queue (README "Several seeds"); this
module only reads what DVC reports. A run is kept when its params equal the
reference params (the workspace's) in everything but ``base.seed``, so the
table never mixes variants; for a seed that several runs share, the first one
listed wins (the workspace, then the baseline commit, then its experiments).
An experiment that is still queued or running, or that failed, is left out:
while it runs, ``dvc exp show`` lists the metrics in its temporary copy, which
are its baseline's until its stages overwrite them.
"""

from __future__ import annotations

import copy
import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd

from catride_core.errors import ArtifactError
from catride_core.names import SCORES

#: benign metrics shown per model, then the robustness summary, then every attack's adversarial value
BENIGN_SCORES = ("R@1", "mAP", "NMI")
SUMMARY_SCORES = ("ERS", "ARS")


@dataclass(frozen=True)
class Run:
    """One row of ``dvc exp show``: its name, its params.yaml and its metrics files."""

    name: str
    params: dict[str, Any]
    metrics: dict[str, dict[str, Any]]  # metrics file path -> its content


def _run(entry: Mapping[str, Any], source: str) -> Run | None:
    data = entry.get("data") or {}
    if data.get("error") or entry.get("error"):
        return None
    params = ((data.get("params") or {}).get("params.yaml") or {}).get("data")
    if not params:
        return None
    name = entry.get("name") or str(entry.get("rev"))
    seed = (params.get("base") or {}).get("seed", 0)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ArtifactError(f"{source}: {name}: base.seed {seed!r} is not a seed (a whole number)")
    metrics = {path: content.get("data") or {} for path, content in (data.get("metrics") or {}).items()}
    for path, values in metrics.items():
        problem = _metrics_problem(values)
        if problem:
            raise ArtifactError(f"{source}: {name}: {path}: {problem}")
    return Run(name, params, metrics)


def _metrics_problem(values: Any, prefix: str = "") -> str | None:
    """Why a metrics file's data, as DVC lists it, cannot be averaged: not a mapping, or a non-finite number."""
    if not isinstance(values, Mapping):
        return f"{prefix.rstrip('.') or 'the file'!r} holds {values!r}, not a mapping of metrics"
    if not prefix and "adversarial" in values and not isinstance(values["adversarial"], Mapping):
        return f"'adversarial' holds {values['adversarial']!r}, not a mapping of scores"
    for key, value in values.items():
        if isinstance(value, Mapping):
            problem = _metrics_problem(value, f"{prefix}{key}.")
            if problem:
                return problem
        elif isinstance(value, float) and not math.isfinite(value):
            return f"{prefix + key!r} is not a finite number"
    return None


def _entries(values: Any, what: str, source: str, owner: str = "") -> list[Mapping[str, Any]]:
    """A list of revisions as ``dvc exp show --json`` lists them, each checked to be a mapping."""
    if not isinstance(values, list):
        raise ArtifactError(f"{source}: {owner}{what}: expected a list of revisions, got {type(values).__name__}")
    for index, entry in enumerate(values):
        if not isinstance(entry, Mapping):
            raise ArtifactError(f"{source}: {owner}entry {index} is a {type(entry).__name__}, not a revision")
    return values


def _unfinished(experiment: Mapping[str, Any]) -> str | None:
    """The state of an experiment DVC has not finished successfully (``queued``, ``running``, ``failed``), else None."""
    state = (experiment.get("executor") or {}).get("state")
    return None if state in (None, "success") else str(state)


def unfinished_experiments(exp_show: Sequence[Mapping[str, Any]]) -> list[str]:
    """``name (state)`` of every experiment ``experiment_runs`` leaves out as not finished."""
    return [f"{experiment.get('name') or '?'} ({state})"
            for entry in exp_show for experiment in entry.get("experiments") or []
            if (state := _unfinished(experiment)) is not None]


def experiment_runs(exp_show: Any, source: str = "dvc exp show --json") -> list[Run]:
    """Every finished run ``dvc exp show --json`` lists, in its order: each baseline, then its experiments.

    Raises:
        ArtifactError: naming ``source`` (the command or a saved file) and the run, where the output is not
            what DVC lists: not a list of revisions, a seed that is not a whole number, a metric that is not
            a finite number.
    """
    runs: list[Run] = []
    for entry in _entries(exp_show, "the output", source):
        owner = f"{entry.get('name') or entry.get('rev')}: "
        baseline = _run(entry, source)
        if baseline is not None:
            runs.append(baseline)
        for experiment in _entries(entry.get("experiments") or [], "experiments", source, owner):
            if _unfinished(experiment) is not None:
                continue
            for revision in _entries(experiment.get("revs") or [], "revs", source, owner):
                run = _run(revision, source)
                if run is not None:
                    runs.append(run)
    return runs


def _without_seed(params: Mapping[str, Any]) -> dict[str, Any]:
    params = copy.deepcopy(dict(params))
    params.get("base", {}).pop("seed", None)
    return params


def runs_by_seed(runs: Sequence[Run], reference: Mapping[str, Any]) -> dict[int, Run]:
    """Seed -> run, for the runs whose params equal ``reference`` but for ``base.seed``.

    Every seed is a whole number: ``experiment_runs`` refuses a run whose seed
    is not (``int(True)`` would count ``true`` as seed 1).
    """
    wanted = _without_seed(reference)
    by_seed: dict[int, Run] = {}
    for run in runs:
        if _without_seed(run.params) == wanted:
            by_seed.setdefault(run.params.get("base", {}).get("seed", 0), run)
    return dict(sorted(by_seed.items()))


def model_scores(run: Run, model: str) -> dict[str, float | None]:
    """One model's scores in one run, from ``metrics/benign/<model>.json`` and ``metrics/robustness/<model>.json``."""
    benign = run.metrics.get(f"metrics/benign/{model}.json", {})
    robustness = run.metrics.get(f"metrics/robustness/{model}.json", {})
    adversarial = robustness.get("adversarial") or {}
    scores = {key: benign.get(key) for key in BENIGN_SCORES}
    scores |= {key: robustness.get(key) for key in SUMMARY_SCORES}
    scores |= {key: adversarial.get(key) for key in SCORES}
    return scores


def seeds_table(by_seed: Mapping[int, Run], models: Sequence[str]) -> pd.DataFrame:
    """Long table: model, score, mean, std (sample, n - 1), n and the seeds it is over.

    A score missing in a run (a subset of attacks) is left out of that score's
    mean; a score no run has gets mean and std NaN.
    """
    rows = []
    for model in models:
        per_seed = {seed: model_scores(run, model) for seed, run in by_seed.items()}
        for score in (*BENIGN_SCORES, *SUMMARY_SCORES, *SCORES):
            values = {s: v[score] for s, v in per_seed.items() if isinstance(v[score], (int, float))}
            numbers = list(values.values())
            rows.append({
                "model": model, "score": score,
                "mean": statistics.fmean(numbers) if numbers else math.nan,
                "std": statistics.stdev(numbers) if len(numbers) > 1 else math.nan,
                "n": len(numbers), "seeds": " ".join(map(str, values)),
            })
    return pd.DataFrame(rows)


def seeds_markdown(table: pd.DataFrame, models: Sequence[str]) -> str:
    """One row per model, one column per score, each cell ``mean ± std``."""
    scores = list(dict.fromkeys(table["score"]))
    cell = {(row.model, row.score): row for row in table.itertuples(index=False)}

    def show(model: str, score: str) -> str:
        row = cell[(model, score)]
        if math.isnan(row.mean):
            return "n/a"
        decimals = 3 if score in ("TMA", "ES:D") else 1
        spread = "" if math.isnan(row.std) else f" ± {row.std:.{decimals}f}"
        return f"{row.mean:.{decimals}f}{spread}"

    seeds = sorted({s for row in table.itertuples(index=False) for s in row.seeds.split()}, key=int)
    lines = [
        "# The comparison over seeds",
        "",
        (f"Mean ± sample standard deviation over seeds {', '.join(seeds)} ({len(seeds)} runs of the same params"
         " but `base.seed`), read from `dvc exp show --json` by `catride seeds`."),
        "",
        "| model | " + " | ".join(scores) + " |",
        "|" + "---|" * (len(scores) + 1),
    ]
    lines += ["| " + " | ".join([model, *(show(model, s) for s in scores)]) + " |" for model in models]
    return "\n".join(lines) + "\n"
