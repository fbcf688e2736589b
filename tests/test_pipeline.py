"""Contract between dvc.yaml, params.yaml and the CLI; determinism; a real `dvc repro` on tiny data."""

import json
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from catride_core import cli
from catride_core.config import Params

ROOT = Path(__file__).resolve().parents[1]
DVC = yaml.safe_load((ROOT / "dvc.yaml").read_text())
PARAMS = yaml.safe_load((ROOT / "params.yaml").read_text())


def stage_items():
    """(name, stage) for every stage, foreach/matrix stages expanded by their first item."""
    for name, stage in DVC["stages"].items():
        yield name, stage


def command_of(stage):
    words = shlex.split(stage["cmd"])
    assert words[:2][0] == "python" and words[1].startswith("stages/")
    return words


def declared_paths(stage):
    paths = []
    for kind in ("outs", "metrics", "plots"):
        for entry in stage.get(kind, []):
            paths.append(next(iter(entry)) if isinstance(entry, dict) else entry)
    return paths


@pytest.mark.parametrize(("name", "stage"), list(stage_items()))
def test_stage_command_is_a_cli_command_with_those_options(name, stage):
    words = command_of(stage)
    script = ROOT / words[1]
    assert script.exists()
    command_name = script.stem
    assert f"from catride_core.cli import {command_name}" in script.read_text()
    command = cli.main.commands[command_name]
    known = {opt for p in command.params for opt in p.opts + p.secondary_opts}
    options = [w for w in words[2:] if w.startswith("--")]
    assert set(options) <= known, f"{name}: options not in `catride {command_name}`: {set(options) - known}"


@pytest.mark.parametrize(("name", "stage"), list(stage_items()))
def test_every_written_path_is_declared_and_passed(name, stage):
    cmd = stage["cmd"]
    for path in declared_paths(stage):
        assert path in cmd, f"{name}: declared output {path} is not on its command line"
    for dep in stage.get("deps", []):
        assert (ROOT / dep).exists() or "${" in dep, f"{name}: dependency {dep} does not exist"


@pytest.mark.parametrize(("name", "stage"), list(stage_items()))
def test_declared_params_exist(name, stage):
    for key in stage.get("params", []):
        node = PARAMS
        for part in key.split("."):
            assert part in node, f"{name}: params key {key} is not in params.yaml"
            node = node[part]


def test_params_yaml_lists_every_field():
    # params.yaml is the documentation of the defaults: every field appears, with the model's default
    defaults = Params().model_dump(mode="json", by_alias=True)

    def keys(node, prefix=""):
        for key, value in node.items():
            yield prefix + key
            if isinstance(value, dict):
                yield from keys(value, prefix + key + ".")

    assert set(keys(PARAMS)) == set(keys(defaults))
    assert Params.model_validate(PARAMS) is not None


def test_same_params_give_byte_identical_metrics(tmp_path):
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({
        "prepare": {"max_per_class": 20}, "pretrain": {"epochs": 1, "pairs_per_batch": 16, "embedding_dim": 16},
    }))
    outputs = []
    for run in ("a", "b"):
        d = tmp_path / run
        for command, args in (
            (cli.prepare, ["--out", d / "data"]),
            (cli.pretrain, ["--data", d / "data", "--checkpoint", d / "m.pt", "--log", d / "log.csv", "--no-progress"]),
            (cli.evaluate, ["--data", d / "data", "--checkpoint", d / "m.pt", "--metrics", d / "metrics.json"]),
        ):
            result = CliRunner().invoke(command, ["--params", str(params), *map(str, args)], catch_exceptions=False)
            assert result.exit_code == 0, result.output
        outputs.append((d / "metrics.json").read_bytes())
    assert outputs[0] == outputs[1]


def dvc(workdir, *args):
    bin_dir = Path(sys.executable).parent
    result = subprocess.run([str(bin_dir / "dvc"), *args], cwd=workdir, capture_output=True, text=True,
                            env={"PATH": f"{bin_dir}:/usr/bin:/bin", "HOME": str(workdir)})
    assert result.returncode == 0, f"dvc {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}"
    return result


@pytest.mark.slow
def test_dvc_repro_and_reruns_only_what_a_param_touches(tmp_path):
    """A real `dvc repro` in a copy of the project, on 20 digits a class and tiny budgets."""
    work = tmp_path / "project"
    outputs = {".venv", ".git", ".dvc", "data", "models", "logs", "metrics", "attacks", "reports", "dvc.lock"}
    shutil.copytree(ROOT, work, ignore=lambda folder, names: (
        [n for n in names if n in outputs] if Path(folder) == ROOT else [n for n in names if n == "__pycache__"]))
    params = yaml.safe_load((work / "params.yaml").read_text())
    params["prepare"]["max_per_class"] = 20
    params["pretrain"].update(epochs=1, pairs_per_batch=16, embedding_dim=16)
    for section, overrides in TINY_OVERRIDES.items():
        params[section].update(overrides)
    (work / "params.yaml").write_text(yaml.safe_dump(params))
    subprocess.run(["git", "init", "-q"], cwd=work, check=True)
    dvc(work, "init", "-q")
    dvc(work, "config", "core.analytics", "false")
    dvc(work, "repro")
    assert json.loads((work / "metrics" / "benign.json").read_text())["R@1"] >= 0
    assert "up to date" in dvc(work, "repro").stdout
    params["pretrain"]["margin"] = 0.3
    (work / "params.yaml").write_text(yaml.safe_dump(params))
    ran = set(re.findall(r"Running stage '([^']+)'", dvc(work, "repro").stdout))
    assert ran == set(STAGES_AFTER_PRETRAIN), ran


# Extra sections of later stages shrink here too; the stages a pretrain param reruns:
TINY_OVERRIDES: dict = {}
STAGES_AFTER_PRETRAIN = ["pretrain", "evaluate"]
