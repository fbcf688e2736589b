"""Robustness curves from saved sweeps: the long table of every (model, attack, score, eps) and its figure."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from catride_core.names import ATTACK_SCORES
from catride_core.report.palette import model_colours

#: score -> the attack that reports it
_ATTACK_OF = {score: attack for attack, scores in ATTACK_SCORES.items() for score in scores}
#: how a score's axis is labelled where it is not a percentage
_AXES = {"TMA": "cosine to the target", "ES:D": "embedding shift (L2 distance)"}
#: what a score measures, for the axis of a percentage
_PERCENT = {"ES:R": "R@1 of the attacked query", "CA+": "prank of the attacked candidate",
            "CA-": "prank of the attacked candidate", "QA+": "prank of the target candidate",
            "QA-": "prank of the target candidate"}
#: which way a score is more robust where it is not "higher" (the attacks' definitions, docs/method.md section 5)
_LOWER_IS_ROBUST = ("CA-", "QA-", "TMA", "ES:D")
COLUMNS = ("model", "attack", "score", "eps", "clean", "adversarial", "n_queries")


def sweep_problem(table: pd.DataFrame) -> str | None:
    """What makes a saved sweep unusable for the curves (its eps or query counts missing or not finite), or None."""
    for column in ("eps", "n_queries"):
        if column not in table.columns:
            return f"lacks the column {column}"
        values = pd.to_numeric(table[column], errors="coerce")
        if not np.isfinite(values.to_numpy(dtype=float)).all():
            return f"column {column} holds values that are not finite numbers"
    return None


def sweep_columns(attacks: Sequence[str]) -> list[str]:
    """The columns a model's sweep of ``attacks`` holds (``eps_sweep.wide``'s): without one, a curve would be missing."""
    scores = [score for attack in attacks for score in ATTACK_SCORES[attack]]
    return ["eps", "n_queries", *(column for score in scores for column in (score, f"{score}/clean"))]


def sweep_points(sweeps: Mapping[str, pd.DataFrame]) -> pd.DataFrame:
    """The long table of every model's sweep: one row per (model, attack, score, eps).

    Args:
        sweeps: model -> its sweep as ``eps_sweep.wide`` wrote it, in the order the table keeps.

    Returns:
        columns ``COLUMNS``: the adversarial and clean per-query means and how many queries were attacked.
    """
    rows = []
    for model, table in sweeps.items():
        scores = [c for c in table.columns if c in _ATTACK_OF]
        for score in scores:
            rows += [{"model": model, "attack": _ATTACK_OF[score], "score": score, "eps": float(row["eps"]),
                      "clean": float(row[f"{score}/clean"]), "adversarial": float(row[score]),
                      "n_queries": int(row["n_queries"])}
                     for _, row in table.iterrows()]
    return pd.DataFrame(rows, columns=list(COLUMNS))


def eps_label(eps: float) -> str:
    """A budget as papers write it: ``8/255`` when it is a whole number of 255ths (``0`` for none), else the number."""
    steps = eps * 255
    if abs(steps - round(steps)) >= 1e-6:
        return f"{eps:.3g}"
    return f"{round(steps)}/255" if round(steps) else "0"


def score_axis(score: str) -> str:
    """The y-axis label of a score, with its unit."""
    return _AXES.get(score, f"{_PERCENT.get(score, score)} (%)")


def sweep_figure(points: pd.DataFrame, attack_eps: float | None = None) -> Any:
    """One panel per score: its adversarial value against eps, one line per model (a matplotlib Figure).

    Args:
        points: ``sweep_points``' rows.
        attack_eps: the attack stage's budget, marked on every panel (None: not marked).
    """
    # imported here: matplotlib takes over a second to import, and only the figures need it
    import matplotlib

    matplotlib.use("Agg")  # files only: reports are rendered without a display
    import matplotlib.pyplot as plt

    scores = list(dict.fromkeys(points["score"]))
    models = list(dict.fromkeys(points["model"]))
    colours = model_colours(models)
    figure, axes = plt.subplots(1, max(len(scores), 1), figsize=(4.6 * max(len(scores), 1), 3.8), dpi=120,
                                squeeze=False)
    eps_values = sorted(set(points["eps"]))
    for axis, score in zip(axes[0], scores):
        for model in models:
            rows = points[(points["score"] == score) & (points["model"] == model)].sort_values("eps")
            axis.plot(rows["eps"], rows["adversarial"], marker="o", color=colours[model], label=model)
        if attack_eps is not None:
            axis.axvline(attack_eps, color="0.6", linestyle=":", linewidth=1)
        axis.set_xticks(eps_values, [eps_label(e) for e in eps_values], rotation=30)
        axis.set_xlabel("eps (L-inf budget, pixel units)")
        axis.set_ylabel(score_axis(score))
        queries = int(points.loc[points["score"] == score, "n_queries"].max())
        better = "lower" if score in _LOWER_IS_ROBUST else "higher"
        axis.set_title(f"{score} against eps ({queries} queries)\n{better} is more robust", fontsize=10)
        axis.grid(alpha=0.3)
    if scores:
        axes[0][-1].legend(title="model", fontsize=8)
    figure.tight_layout()
    return figure
