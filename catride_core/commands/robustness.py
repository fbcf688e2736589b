"""``catride robustness``: ERS and ARS of one model from its attack results."""

from __future__ import annotations

import math
from pathlib import Path

import click

from catride_core.artifacts.files import ensure_writable, read_json, write_json
from catride_core.commands.common import PARAMS_OPTION, stage
from catride_core.config import load_params
from catride_core.errors import ArtifactError
from catride_core.retrieval.robustness import attack_result_problem, robustness_summary


@stage
@PARAMS_OPTION
@click.option("--benign", "benign_path", type=click.Path(dir_okay=False), required=True, help="the model's evaluate metrics JSON")
@click.option("--attacks", "attacks_dir", type=click.Path(file_okay=False), required=True, help="folder of the model's attack results")
@click.option("--out", "out_path", type=click.Path(dir_okay=False), required=True, help="robustness metrics JSON to write")
def robustness(params_path: str, benign_path: str, attacks_dir: str, out_path: str) -> None:
    """ERS and ARS (docs/method.md section 6) of one model from its attack results."""
    params = load_params(params_path)
    ensure_writable(out_path)
    benign = read_json(benign_path)
    for key in ("R@1", "spread"):
        if not isinstance(benign.get(key), (int, float)) or not math.isfinite(benign[key]):
            raise ArtifactError(f"{benign_path}: {key!r} is missing or not a finite number")
    clean: dict[str, float] = {}
    adversarial: dict[str, float] = {}
    for name in params.attack.names:
        path = Path(attacks_dir) / f"{name}.json"
        result = read_json(path)
        problem = attack_result_problem(name, result)
        if problem:
            raise ArtifactError(f"{path}: {problem}")
        clean.update(result["clean"])
        adversarial.update(result["adversarial"])
    summary = robustness_summary(clean, adversarial, benign["R@1"], benign["spread"])
    write_json(out_path, {
        **{key: None if value is None else round(value, 4) for key, value in summary.items()},
        "adversarial": adversarial, "clean": clean,
    })
    click.echo(", ".join(f"{key} {'n/a' if value is None else f'{value:.2f}'}" for key, value in summary.items()))
