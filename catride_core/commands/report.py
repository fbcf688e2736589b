"""``catride report``: the comparison of every model, as a CSV table, a markdown report and a PNG chart."""

from __future__ import annotations

from pathlib import Path

import click

from catride_core import reporting
from catride_core.artifacts.files import (
    ensure_writable,
    read_json,
    save_figure,
    write_csv,
    write_text,
)
from catride_core.commands.common import (
    ADHOC_PARAMS_OPTION,
    SET_OPTION,
    read_params,
    stage,
)


@stage
@ADHOC_PARAMS_OPTION
@SET_OPTION
@click.option("--metrics", "metrics_dir", type=click.Path(file_okay=False), required=True, help="folder holding benign/ and robustness/ metrics")
@click.option("--table", "table_path", type=click.Path(dir_okay=False), required=True, help="CSV, one row per model")
@click.option("--markdown", "markdown_path", type=click.Path(dir_okay=False), required=True, help="markdown report")
@click.option("--figure", "figure_path", type=click.Path(dir_okay=False), required=True, help="PNG bar chart of ERS and ARS")
def report(params_path: str | None, overrides: tuple[str, ...], metrics_dir: str, table_path: str, markdown_path: str, figure_path: str) -> None:
    """The comparison of every model: a CSV table, a markdown report and a PNG chart."""
    params = read_params(params_path, overrides)
    ensure_writable(table_path, markdown_path, figure_path)
    folder = Path(metrics_dir)
    benign = {m: read_json(folder / "benign" / f"{m}.json") for m in params.models}
    robust = {m: read_json(folder / "robustness" / f"{m}.json") for m in params.models}
    table = reporting.robustness_table(params.models, benign, robust)
    budget = params.attack
    write_csv(table_path, table)
    write_text(markdown_path, reporting.markdown_report(table, budget.eps, budget.step_size, budget.steps, budget.max_queries))
    save_figure(figure_path, reporting.robustness_figure(table))
    click.echo(table.to_string(index=False))
