"""``catride curves``: every model's eps sweep in one long table and one figure (robust R@1 / prank against eps)."""

from __future__ import annotations

from pathlib import Path

import click

from catride_core.artifacts.files import (
    ensure_writable,
    read_csv,
    save_figure,
    write_csv,
)
from catride_core.commands.common import (
    ADHOC_PARAMS_OPTION,
    SET_OPTION,
    echo_table,
    read_params,
    stage,
)
from catride_core.errors import ArtifactError
from catride_core.report import curves as robustness_curves


@stage
@ADHOC_PARAMS_OPTION
@SET_OPTION
@click.option("--sweeps", "sweeps_dir", type=click.Path(file_okay=False), required=True,
              help="folder of the sweep stage's <model>.csv files")
@click.option("--table", "table_path", type=click.Path(dir_okay=False), required=True,
              help="CSV to write: one row per model, attack, score and eps")
@click.option("--figure", "figure_path", type=click.Path(dir_okay=False), required=True,
              help="PNG to write: each score against eps, one line per model")
def curves(params_path: str | None, overrides: tuple[str, ...], sweeps_dir: str, table_path: str,
           figure_path: str) -> None:
    """The robustness curves of every model of `models`: a long CSV table and a PNG figure."""
    params = read_params(params_path, overrides)
    ensure_writable(table_path, figure_path)
    sweeps = {}
    for model in params.models:
        path = Path(sweeps_dir) / f"{model}.csv"
        if not path.is_file():
            raise ArtifactError(f"{path}: missing; run the sweep stage of {model} first")
        sweeps[model] = read_csv(path, robustness_curves.sweep_columns(params.report.sweep_attacks))
        problem = robustness_curves.sweep_problem(sweeps[model])
        if problem:
            raise ArtifactError(f"{path}: {problem}; rerun the sweep stage of {model}")
    points = robustness_curves.sweep_points(sweeps)
    write_csv(table_path, points, float_format=None)  # every digit: eps is 8/255 exactly
    save_figure(figure_path, robustness_curves.sweep_figure(points, params.attack.eps))
    shown = points.assign(eps=points["eps"].map(robustness_curves.eps_label))
    echo_table(shown.pivot_table(index=["model", "score"], columns="eps", values="adversarial", sort=False)
               .reset_index().rename_axis(columns=None))
