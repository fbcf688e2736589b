"""The report's figures, drawn from saved results: one colour per model in every one of them.

Every function takes the report's tables (``reporting.robustness_table``) or
the training logs as DataFrames and returns a matplotlib Figure; nothing here
reads or writes a file. matplotlib is imported on the first figure, not with
this module: it takes over a second to import and only the report draws.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from catride_core.names import ADVERSARIAL_DEFENSES, PRETRAINED, SCORES
from catride_core.report.palette import MODEL_COLOURS

#: the scores in %, drawn on one axis; TMA (a cosine) and ES:D (a distance) get an axis each
PERCENT_SCORES: tuple[str, ...] = tuple(s for s in SCORES if s not in ("TMA", "ES:D"))
#: the y label of every score or log column that has a unit
UNITS = {
    "TMA": "TMA (cosine similarity)",
    "ES:D": "ES:D (embedding distance)",
    "ERS": "ERS (%)",
    "ARS": "ARS (%)",
    "R@1": "clean R@1 (%)",
    "loss": "training loss (triplet, margin units)",
    "collapseness": "collapseness C of the test set",
    "pgd_steps": "inner-PGD steps per batch",
    "adv_loss": "inner-PGD objective (mean per batch)",
}
#: the training-log columns drawn, one panel each (a log without a column skips that panel)
TRAINING_COLUMNS: tuple[str, ...] = ("loss", "R@1", "collapseness", "pgd_steps", "adv_loss")


def log_columns(model: str | None) -> tuple[str, ...]:
    """``epoch`` and the ``TRAINING_COLUMNS`` that ``model``'s fine-tuning log (None: the pretraining log) holds.

    Every log has the test R@1 and collapseness of each epoch; a log of
    training steps (all but ``pretrained``'s epoch 0) has the loss, and an
    adversarial defense's has its inner PGD's steps and objective. A log
    without one of them is damaged: its curve would silently be missing.
    """
    held = {"R@1", "collapseness"} | ({"loss"} if model != PRETRAINED else set())
    held |= {"pgd_steps", "adv_loss"} if model in ADVERSARIAL_DEFENSES else set()
    return ("epoch", *(column for column in TRAINING_COLUMNS if column in held))


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")  # files only: reports are rendered without a display
    import matplotlib.pyplot as plt

    return plt


def _errors(table: pd.DataFrame, column: str) -> np.ndarray | None:
    """Asymmetric error bars (2 x models) from the ``_low``/``_high`` columns; None when there are none."""
    if f"{column}_low" not in table:
        return None
    value = table[column].astype(float).to_numpy()
    low = table[f"{column}_low"].astype(float).to_numpy()
    high = table[f"{column}_high"].astype(float).to_numpy()
    errors = np.stack([value - low, high - value])
    return None if np.isnan(errors).all() else np.nan_to_num(errors, nan=0.0)


def _grouped_bars(axis: Any, table: pd.DataFrame, columns: Sequence[str], label_bars: bool) -> None:
    """One group per column, one bar per model in its colour, with the interval as an error bar."""
    width = 0.8 / len(table)
    positions = np.arange(len(columns))
    for i, model in enumerate(table["model"]):
        row = table.iloc[[i]]
        values = [float(row[c].iloc[0]) if pd.notna(row[c].iloc[0]) else np.nan for c in columns]
        errors = [_errors(row, c) for c in columns]
        yerr = None if all(e is None for e in errors) else np.hstack(
            [np.zeros((2, 1)) if e is None else e for e in errors])
        offsets = positions - 0.4 + width * (i + 0.5)
        bars = axis.bar(offsets, np.nan_to_num(values, nan=0.0), width, color=MODEL_COLOURS[model], label=model,
                        yerr=yerr, capsize=2, error_kw={"elinewidth": 0.8, "ecolor": "#333333"})
        if label_bars:
            axis.bar_label(bars, labels=["n/a" if np.isnan(v) else f"{v:.1f}" for v in values], fontsize=7,
                           padding=2)
    axis.set_xticks(positions, list(columns))
    axis.grid(axis="y", alpha=0.3)


def scores_figure(table: pd.DataFrame) -> Any:
    """ERS and ARS per model, with their intervals where the metrics give them."""
    plt = _pyplot()
    figure, axis = plt.subplots(figsize=(0.9 * len(table) + 4, 4.0), dpi=120)
    _grouped_bars(axis, table, ("ERS", "ARS"), label_bars=True)
    axis.set_ylabel("score (%)")
    axis.set_ylim(0, 100)
    axis.set_title("Robustness per model: ERS and ARS (higher is more robust)")
    axis.legend(title="model", fontsize=8, ncols=2)
    figure.tight_layout()
    return figure


def attacks_figure(table: pd.DataFrame) -> Any:
    """Every attack's adversarial value per model: the eight scores in %, then TMA and ES:D on their own axes."""
    plt = _pyplot()
    figure, axes = plt.subplots(1, 3, figsize=(13, 4.2), dpi=120, gridspec_kw={"width_ratios": [8, 1.4, 1.4]})
    _grouped_bars(axes[0], table, PERCENT_SCORES, label_bars=False)
    axes[0].set_ylabel("adversarial value (%)")
    axes[0].set_ylim(0, 100)
    axes[0].set_title("Attacks (CA+, QA+, ES:R, LTM, GTM, GTT: higher is more robust; CA-, QA-: lower)", fontsize=9)
    for axis, score in zip(axes[1:], ("TMA", "ES:D"), strict=True):
        _grouped_bars(axis, table, (score,), label_bars=False)
        axis.set_ylabel(UNITS[score])
        axis.set_title(f"{score} (lower is more robust)", fontsize=9)
    axes[0].legend(title="model", fontsize=8, ncols=len(table))
    figure.suptitle("Adversarial value of every attack, per model")
    figure.tight_layout()
    return figure


def tradeoff_figure(table: pd.DataFrame) -> Any:
    """Clean R@1 against ERS and against ARS: one labelled point per model."""
    plt = _pyplot()
    figure, axes = plt.subplots(1, 2, figsize=(11, 4.4), dpi=120)
    for axis, score in zip(axes, ("ERS", "ARS"), strict=True):
        for i, model in enumerate(table["model"]):
            row = table.iloc[[i]]
            x, y = float(row["R@1"].iloc[0]), row[score].iloc[0]
            if pd.isna(y) or pd.isna(x):
                continue
            axis.errorbar([x], [float(y)], yerr=_errors(row, score), fmt="o", color=MODEL_COLOURS[model],
                          capsize=3, markersize=7, label=model)
            axis.annotate(model, (x, float(y)), textcoords="offset points", xytext=(6, 4), fontsize=8)
        if not axis.containers:
            axis.text(0.5, 0.5, f"no {score}: it needs all ten attack values", ha="center", transform=axis.transAxes)
        axis.set_xlabel(UNITS["R@1"])
        axis.set_ylabel(UNITS[score])
        axis.set_title(f"Clean accuracy against {score} (up and right is better)", fontsize=10)
        axis.grid(alpha=0.3)
        axis.margins(x=0.15, y=0.15)
    if axes[0].containers:
        axes[0].legend(title="model", fontsize=8)
    figure.suptitle("Robustness/accuracy trade-off")
    figure.tight_layout()
    return figure


def _curves(axes: Sequence[Any], logs: Mapping[str, pd.DataFrame], columns: Sequence[str]) -> None:
    for axis, column in zip(axes, columns, strict=True):
        for model, log in logs.items():
            if column in log and len(log):
                axis.plot(log["epoch"], log[column], "o-", color=MODEL_COLOURS[model], label=model, markersize=4)
        axis.set_xlabel("epoch")
        axis.set_ylabel(UNITS[column])
        axis.set_title(UNITS[column].split(" (")[0], fontsize=10)
        axis.grid(alpha=0.3)
        # epochs are whole numbers: no 1.5 between them
        axis.xaxis.get_major_locator().set_params(integer=True)


def training_figure(logs: Mapping[str, pd.DataFrame]) -> Any:
    """Fine-tuning curves per model (``logs/finetune/<model>.csv``): loss, clean R@1, collapseness, inner PGD.

    A panel is drawn for every column of ``TRAINING_COLUMNS`` that at least one
    log has; a model without the column (the undefended model has no inner PGD)
    is absent from that panel.
    """
    plt = _pyplot()
    columns = [c for c in TRAINING_COLUMNS if any(c in log for log in logs.values())]
    rows = -(-(len(columns) + 1) // 3)  # three panels a row, and a place for the legend
    figure, axes = plt.subplots(rows, 3, figsize=(12, 3.4 * rows), dpi=120, squeeze=False)
    panels = axes.ravel()
    _curves(panels[:len(columns)], logs, columns)
    for spare in panels[len(columns):]:
        spare.axis("off")
    panels[-1].legend(*panels[0].get_legend_handles_labels(), title="model", loc="center")
    figure.suptitle("Fine-tuning curves per model (test-set R@1 and collapseness after each epoch)")
    figure.tight_layout()
    return figure


def pretrain_figure(log: pd.DataFrame) -> Any:
    """Pretraining curves (``logs/pretrain.csv``), in the colour of the model it produces (``pretrained``)."""
    plt = _pyplot()
    columns = [c for c in TRAINING_COLUMNS if c in log]
    figure, axes = plt.subplots(1, len(columns), figsize=(3.6 * len(columns), 3.6), dpi=120, squeeze=False)
    _curves(axes[0], {PRETRAINED: log}, columns)
    figure.suptitle("Benign pretraining (the start of every fine-tuning)")
    figure.tight_layout()
    return figure


#: every figure the report draws, by its key in ``content.FIGURE_CAPTIONS`` (the sweep's is drawn by ``curves``)
FIGURES = ("scores", "attacks", "tradeoff", "finetune", "pretrain")


def report_figures(
    table: pd.DataFrame, finetune_logs: Mapping[str, pd.DataFrame] | None, pretrain_log: pd.DataFrame | None
) -> dict[str, Any]:
    """Every figure of the report, by its key in ``reporting.FIGURE_CAPTIONS``.

    The training curves are drawn where their logs are given (``finetune_logs``
    may hold only some of the models: a model without a log is absent).
    """
    drawn = {"scores": scores_figure(table), "attacks": attacks_figure(table), "tradeoff": tradeoff_figure(table)}
    if finetune_logs:
        drawn["finetune"] = training_figure(finetune_logs)
    if pretrain_log is not None:
        drawn["pretrain"] = pretrain_figure(pretrain_log)
    return drawn
