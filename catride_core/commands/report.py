"""``catride report``: the comparison of every model, as CSV tables, a markdown report, one HTML page and PNG figures."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
import numpy as np
import pandas as pd

from catride_core.artifacts.files import (
    ensure_folder_writable,
    ensure_writable,
    read_csv,
    read_json,
    read_png,
    read_text,
    save_figures,
    write_csv,
    write_text,
)
from catride_core.commands.common import (
    ADHOC_PARAMS_OPTION,
    SET_OPTION,
    read_params,
    stage,
)
from catride_core.config import Params, parse_params, read_params_mapping
from catride_core.errors import ArtifactError
from catride_core.report import content, figures, published
from catride_core.report.document import Block, to_html, to_markdown
from catride_core.retrieval.robustness import summary_problem

#: an optional input: a folder, or (``_FILE_IN``) one file
_DIR_IN = {"type": click.Path(file_okay=False), "default": None}
_FILE_IN = {"type": click.Path(dir_okay=False), "default": None}


def git_commit() -> str:
    """The checked-out commit, and whether the working tree differs from it (``unknown`` outside git)."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], capture_output=True, text=True, check=True)
        status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True,
                                text=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        return "unknown (no git commit here)"
    return head.stdout.strip() + (" (with uncommitted changes)" if status.stdout.strip() else "")


def read_metrics(path: Path, *problems: Callable[[dict[str, Any]], str | None]) -> dict[str, Any]:
    """A metrics JSON, checked by each of ``problems`` (``content.benign_problem``, ``content.robustness_problem``,
    ``summary_problem``).

    Raises:
        ArtifactError: naming the file and the first thing wrong with it.
    """
    metrics = read_json(path)
    found = next(filter(None, (problem(metrics) for problem in problems)), None)
    if found:
        raise ArtifactError(f"{path}: {found}")
    return metrics


def read_resamples(folder: Path, table: pd.DataFrame, said_by: dict[str, Path],
                   robust: dict[str, dict[str, Any]]) -> dict[str, pd.DataFrame]:
    """Every model's bootstrap resamples of the compared scores, one row per resample.

    Each file holds as many rows as its metrics (``said_by``) record, and
    numbers, finite wherever the metrics give the score: a short or truncated
    file would otherwise fail the paired comparison without naming it, and a
    column that cannot be read as numbers would turn the comparisons into "no
    resamples" without a word. Both are refused, naming the file.
    """
    resamples = {}
    for _, row in table.iterrows():
        path = folder / f"{row['model']}.csv"
        frame = read_csv(path, content.COMPARED)
        if row["model"] in said_by:
            expected = robust[said_by[row["model"]].stem]["bootstrap"]["resamples"]
            if len(frame) != expected:
                raise ArtifactError(f"{path}: {len(frame)} resamples, {said_by[row['model']]} says {expected}; the "
                                    "file is short or truncated: rerun the model's robustness stage")
        for score in content.COMPARED:
            values = frame[score].to_numpy(dtype=float)
            if pd.notna(row[score]) and not (len(values) and np.isfinite(values).all()):
                raise ArtifactError(f"{path}: column {score} holds values that are not finite (or none), "
                                    f"while the metrics give {score} {row[score]}")
        resamples[row["model"]] = frame
    return resamples


def published_section(params: Params, published_path: str, presets_dir: str, benign: dict[str, dict[str, Any]],
                      robust: dict[str, dict[str, Any]], confidence: float) -> list[Block]:
    """The report's "Against the published numbers", where ``published_path`` has numbers of the run's dataset.

    The run's params are compared with the published protocol, ``<presets_dir>/<dataset>.yaml``.
    """
    rows = published.parse_published(read_text(published_path), published_path)
    dataset = params.prepare.dataset
    if not any(row.dataset == dataset for row in rows):
        return []
    preset_path = Path(presets_dir) / f"{dataset}.yaml"
    preset = read_params_mapping(preset_path)
    departures = published.protocol_departures(params, parse_params(preset, source=str(preset_path)),
                                               list(published.preset_keys(preset)))
    tables = published.compare(rows, dataset, params.models, benign, robust)
    return content.published_blocks(dataset, tables, departures, preset_path.as_posix(), confidence)


@stage
@ADHOC_PARAMS_OPTION
@SET_OPTION
@click.option("--metrics", "metrics_dir", type=click.Path(file_okay=False), required=True, help="folder holding benign/ and robustness/ metrics")
@click.option("--bootstrap", "bootstrap_dir", **_DIR_IN, help="folder of <model>.csv bootstrap resamples: adds the paired comparisons")
@click.option("--logs", "logs_dir", **_DIR_IN, help="folder of pretrain.csv and finetune/<model>.csv: adds the training curves")
@click.option("--sweep", "sweep_path", **_FILE_IN, help="PNG of the eps sweep, shown in the report")
@click.option("--examples", "examples_dir", **_DIR_IN, help="folder of retrieval-example PNGs, shown in the report")
@click.option("--table", "table_path", type=click.Path(dir_okay=False), required=True, help="CSV, one row per model, with intervals")
@click.option("--tradeoff", "tradeoff_path", type=click.Path(dir_okay=False), required=True, help="CSV of model, R@1, ERS, ARS (a DVC plot)")
@click.option("--markdown", "markdown_path", type=click.Path(dir_okay=False), required=True, help="markdown report")
@click.option("--html", "html_path", type=click.Path(dir_okay=False), required=True, help="the same report as one self-contained HTML page")
@click.option("--figures", "figures_dir", type=click.Path(file_okay=False), required=True, help="folder of the report's PNG figures")
@click.option("--published", "published_path", **_FILE_IN,
              help="CSV of published numbers (docs/published.csv): adds the comparison where it has the run's dataset")
@click.option("--presets", "presets_dir", **_DIR_IN, help="folder of the published protocols (presets/), with --published")
@click.option("--commit", default=None, help="the code's commit as shown in the report (default: asked of git)")
def report(params_path: str | None, overrides: tuple[str, ...], metrics_dir: str, bootstrap_dir: str | None, logs_dir: str | None, sweep_path: str | None,
           examples_dir: str | None, table_path: str, tradeoff_path: str, markdown_path: str, html_path: str,
           figures_dir: str, published_path: str | None, presets_dir: str | None, commit: str | None) -> None:
    """The comparison of every model: CSV tables, a markdown report, one HTML page and PNG figures."""
    if (published_path is None) != (presets_dir is None):
        raise click.UsageError("--published and --presets go together: the comparison needs the published protocol")
    params = read_params(params_path, overrides)
    ensure_writable(table_path, tradeoff_path, markdown_path, html_path)
    ensure_folder_writable(figures_dir, {f"{name}.png" for name in figures.FIGURES})
    folder, models = Path(metrics_dir), params.models
    benign = {m: read_metrics(folder / "benign" / f"{m}.json", content.benign_problem) for m in models}
    robust = {m: read_metrics(folder / "robustness" / f"{m}.json", content.robustness_problem, summary_problem)
              for m in models}
    table = content.robustness_table(models, benign, robust)
    bootstrapped = [m for m in models if robust[m].get("bootstrap")]
    bootstrap = robust[bootstrapped[0]]["bootstrap"] if bootstrapped else None
    confidence = (bootstrap or {}).get("confidence", 0.95)
    comparisons = []
    if bootstrap_dir is not None:
        # each model's resamples, as many as its robustness metrics say (or the first bootstrapped model's)
        said = {m: folder / "robustness" / f"{m if m in bootstrapped else bootstrapped[0]}.json"
                for m in models if bootstrapped}
        comparisons = content.paired_comparisons(table, read_resamples(Path(bootstrap_dir), table, said, robust),
                                                 confidence)
    # the examples of report.example_models only: the folder may still hold those of a model no longer shown
    examples = sorted(str(Path(examples_dir) / f"{m}_{kind}.png") for m in params.report.example_models
                      for kind in ("es", "ca_plus")) if examples_dir is not None else []
    missing = [path for path in examples if not Path(path).is_file()]
    if missing:
        raise ArtifactError(f"{missing[0]}: missing; the examples stage of each of report.example_models writes its "
                            "retrieval examples there: run it first")
    given = {path: read_png(path) for path in ([sweep_path] if sweep_path else []) + examples}
    logs = pretrain_log = None
    if logs_dir is not None:
        logs = {m: read_csv(path, figures.log_columns(m)) for m in models
                if (path := Path(logs_dir) / "finetune" / f"{m}.csv").exists()}
        if params.pretrain.epochs:  # with no pretraining its log is the initialisation's one row: nothing to draw
            pretrain_log = read_csv(Path(logs_dir) / "pretrain.csv", figures.log_columns(None))
    drawn = figures.report_figures(table, logs, pretrain_log)
    shown = {key: str(Path(figures_dir) / f"{key}.png") for key in drawn}
    if sweep_path is not None:
        shown["sweep"] = sweep_path
    settings = content.settings_rows(params, commit or git_commit(), bootstrap)
    against = [] if published_path is None else published_section(params, published_path, presets_dir, benign, robust,
                                                                  confidence)
    adaptive = content.adaptive_blocks(models, robust, params.adaptive.surrogate)
    blocks = content.report_blocks(table, comparisons, confidence, settings, shown, examples, against, adaptive)

    write_csv(table_path, table)
    write_csv(tradeoff_path, content.tradeoff_table(table))
    save_figures(figures_dir, drawn, figures.FIGURES)
    images = given | {path: read_png(path) for key, path in shown.items() if key in drawn}
    links = {path: Path(os.path.relpath(path, Path(markdown_path).parent)).as_posix() for path in images}
    write_text(markdown_path, to_markdown(blocks, links))
    write_text(html_path, to_html(blocks, images, "catride robustness report"))
    click.echo(table[["model", *content.BENIGN_COLUMNS[:1], *content.SUMMARY_COLUMNS]].to_string(index=False))
