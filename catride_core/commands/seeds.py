"""``catride seeds``: mean and standard deviation of every model's scores over the seeds DVC's queue ran."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import click

from catride_core.artifacts.files import ensure_writable, write_csv, write_text
from catride_core.commands.common import PARAMS_OPTION, stage
from catride_core.config import load_params, read_params_mapping
from catride_core.errors import ArtifactError, ParamsError
from catride_core.report.seeds import (
    experiment_runs,
    runs_by_seed,
    seeds_markdown,
    seeds_table,
    unfinished_experiments,
)


def _dvc_exp_show() -> list:
    # the dvc beside this interpreter (the venv's), else the one on PATH
    dvc = Path(sys.executable).with_name("dvc")
    command = str(dvc) if dvc.exists() else shutil.which("dvc")
    if command is None:
        raise ArtifactError("dvc not found: install the project (pip install -e .) or pass --exp-json")
    result = subprocess.run([command, "exp", "show", "--json"], check=False, capture_output=True, text=True)
    if result.returncode != 0:
        raise ArtifactError(f"dvc exp show --json failed: {result.stderr.strip().splitlines()[-1:] or result.returncode}")
    try:
        return json.loads(result.stdout)
    except json.JSONDecodeError as exc:
        raise ArtifactError(f"dvc exp show --json: not JSON ({exc})") from exc


@stage
@PARAMS_OPTION
@click.option("--exp-json", type=click.Path(dir_okay=False, exists=True), default=None,
              help="a saved `dvc exp show --json` output (default: run it here)")
@click.option("--table", "table_path", type=click.Path(dir_okay=False), default="reports/seeds.csv", show_default=True,
              help="CSV: model, score, mean, std, n, seeds")
@click.option("--markdown", "markdown_path", type=click.Path(dir_okay=False), default="reports/seeds.md",
              show_default=True, help="markdown table, one row per model, mean ± std")
@click.option("--min-seeds", type=click.IntRange(min=1), default=2, show_default=True,
              help="refuse to write a table over fewer seeds")
def seeds(params_path: str, exp_json: str | None, table_path: str, markdown_path: str, min_seeds: int) -> None:
    """Mean ± std of every model's scores over the seeds run by `dvc exp run --queue -S base.seed=...`.

    Reads the runs `dvc exp show --json` lists (the workspace, its commit, its
    experiments) and keeps those whose params equal params.yaml's in all but
    base.seed, one per seed; queued, running and failed experiments are left
    out (and named on stderr). Not a pipeline stage: run it after `dvc queue
    start` has finished (README "Several seeds").
    """
    params = load_params(params_path)
    ensure_writable(table_path, markdown_path)
    exp_show = read_json_list(exp_json) if exp_json else _dvc_exp_show()
    by_seed = runs_by_seed(experiment_runs(exp_show, exp_json or "dvc exp show --json"), read_params_mapping(params_path))
    if skipped := unfinished_experiments(exp_show):
        click.echo(f"left out, not finished: {', '.join(skipped)}", err=True)
    if len(by_seed) < min_seeds:
        raise ParamsError(
            f"{params_path}: {len(by_seed)} run(s) share these params but base.seed (seeds {sorted(by_seed)}); "
            f"need at least {min_seeds}: queue more with `dvc exp run --queue -S base.seed=N` and `dvc queue start`"
        )
    table = seeds_table(by_seed, params.models)
    write_csv(table_path, table)
    write_text(markdown_path, seeds_markdown(table, params.models))
    click.echo(f"{len(by_seed)} seeds ({', '.join(map(str, by_seed))}): {', '.join(r.name for r in by_seed.values())}")
    click.echo(seeds_markdown(table, params.models))


def read_json_list(path: str) -> list:
    """A saved ``dvc exp show --json`` (a JSON list)."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ArtifactError(f"{path}: not a readable `dvc exp show --json` output ({exc})") from exc
