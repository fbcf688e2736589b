"""Tables and figures from saved results: one row per model, in the HM paper's layout."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from catride_core.names import SCORES

BENIGN_COLUMNS = ("R@1", "R@2", "mAP", "NMI")
SUMMARY_COLUMNS = ("ERS", "ARS")
DIAGNOSTIC_COLUMNS = ("collapseness", "spread")
#: how each column is printed: cosines and distances with 3 decimals, percentages with 1
DECIMALS = {"TMA": 3, "ES:D": 3, "collapseness": 3, "spread": 3}


def robustness_table(
    models: Sequence[str], benign: Mapping[str, Mapping[str, Any]], robustness: Mapping[str, Mapping[str, Any]]
) -> pd.DataFrame:
    """One row per model: benign metrics, the ten adversarial values, ERS, ARS, diagnostics.

    Args:
        models: row order (``pretrained`` first, then the defenses).
        benign: model -> its ``evaluate`` metrics.
        robustness: model -> its ``robustness`` metrics (with an ``adversarial`` mapping).
    """
    rows = []
    for model in models:
        adversarial = robustness[model]["adversarial"]
        row: dict[str, Any] = {"model": model}
        row |= {key: benign[model].get(key) for key in BENIGN_COLUMNS}
        row |= {key: adversarial.get(key) for key in SCORES}
        row |= {key: robustness[model].get(key) for key in SUMMARY_COLUMNS}
        row |= {key: benign[model].get(key) for key in DIAGNOSTIC_COLUMNS}
        rows.append(row)
    return pd.DataFrame(rows)


def _ranking(table: pd.DataFrame, column: str) -> str:
    ranked = table.dropna(subset=[column]).sort_values(column, ascending=False)
    return " > ".join(f"{row.model} ({row[column]:.1f})" for _, row in ranked.iterrows()) or "n/a (attacks missing)"


def markdown_report(table: pd.DataFrame, attack_budget: Mapping[str, Any], n_queries: int | None) -> str:
    """The robustness report: the table, the measured rankings, and how to read them."""
    shown = table.copy()
    for column in shown.columns[1:]:
        shown[column] = shown[column].map(
            lambda v, c=column: "n/a" if v is None or pd.isna(v) else f"{v:.{DECIMALS.get(c, 1)}f}"
        )
    header = "| " + " | ".join(shown.columns) + " |"
    rule = "|" + "---|" * len(shown.columns)
    lines = [header, rule] + ["| " + " | ".join(map(str, row)) + " |" for row in shown.itertuples(index=False)]
    queries = "every test image" if n_queries is None else f"the first {n_queries} test images"
    return "\n".join([
        "# Robustness report",
        "",
        "Written by the `report` stage from `metrics/benign/*.json` and `metrics/robustness/*.json`;"
        " regenerate with `dvc repro`.",
        "",
        f"Attacks: eps {attack_budget['eps']:.4f}, step {attack_budget['step_size']:.4f}, "
        f"{attack_budget['steps']} sign-PGD steps, on {queries}. "
        "R@K, mAP, NMI, CA, QA, ES:R, LTM, GTM, GTT, ERS and ARS in %; TMA is a cosine and ES:D a distance.",
        "CA+/QA+ (higher is more robust), CA-/QA- (lower is more robust), TMA/ES:D (lower is more robust).",
        "",
        *lines,
        "",
        "## Measured ranking",
        "",
        f"- by ERS: {_ranking(table, 'ERS')}",
        f"- by ARS: {_ranking(table, 'ARS')}",
        f"- by clean R@1: {_ranking(table, 'R@1')}",
        "",
        "ERS is RobRank's empirical robustness score; ARS is this project's attack-relative score"
        " (see README, \"Metrics\"). `collapseness` > 0 on the test set means the model is collapsing.",
        "",
    ])


def robustness_figure(table: pd.DataFrame) -> Any:
    """Bar chart of ERS and ARS per model (a matplotlib Figure)."""
    # imported here: matplotlib takes over a second to import, and only the report draws
    import matplotlib

    matplotlib.use("Agg")  # files only: reports are rendered without a display
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(1.4 * len(table) + 2, 3.6), dpi=120)
    width = 0.38
    positions = range(len(table))
    for offset, column in ((-width / 2, "ERS"), (width / 2, "ARS")):
        values = table[column].astype(float).fillna(0.0)
        bars = axis.bar([p + offset for p in positions], values, width, label=column)
        axis.bar_label(bars, fmt="%.1f", fontsize=8)
    axis.set_xticks(list(positions), table["model"])
    axis.set_ylabel("score (%)")
    axis.set_ylim(0, 100)
    axis.set_title("Robustness per model (higher is better)")
    axis.legend()
    figure.tight_layout()
    return figure
