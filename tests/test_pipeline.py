"""Contract between dvc.yaml, params.yaml and the CLI; determinism; a real `dvc repro` on tiny data."""

import itertools
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


def lookup(path):
    node = PARAMS
    for part in path.split("."):
        node = node[part]
    return node


def substitute(value, item):
    """Resolve ${item}, ${item.key} and ${params.path} the way DVC does, for strings in a stage."""
    if isinstance(value, dict):
        return {substitute(k, item): substitute(v, item) for k, v in value.items()}
    if isinstance(value, list):
        return [substitute(v, item) for v in value]
    if not isinstance(value, str):
        return value

    def resolve(match):
        path = match.group(1)
        if path == "item":
            return str(item)
        if path.startswith("item."):
            return str(item[path[5:]])
        return str(lookup(path))

    return re.sub(r"\$\{([^}]+)\}", resolve, value)


def stage_items():
    """(name, stage) for every stage, foreach and matrix stages expanded with params.yaml's values."""
    for name, stage in DVC["stages"].items():
        if "foreach" in stage:
            for item in substitute(stage["foreach"], None) if isinstance(stage["foreach"], list) else lookup(stage["foreach"][2:-1]):
                yield f"{name}@{item}", substitute(stage["do"], item)
        elif "matrix" in stage:
            axes = {key: lookup(values[2:-1]) if isinstance(values, str) else values for key, values in stage["matrix"].items()}
            body = {k: v for k, v in stage.items() if k != "matrix"}
            for combination in itertools.product(*axes.values()):
                item = dict(zip(axes, combination))
                yield f"{name}@{'-'.join(combination)}", substitute(body, item)
        else:
            yield name, substitute(stage, None)


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
    produced = {path for _, other in stage_items() for path in declared_paths(other)}
    for dep in stage.get("deps", []):
        is_output = any(path == dep or path.startswith(dep + "/") for path in produced)
        assert is_output or (ROOT / dep).exists(), f"{name}: dependency {dep} is neither code nor a stage output"


#: what every stage command imports, whichever stage it is (catride_core.cli imports them all)
SHARED_CODE = {"catride_core/cli.py", "catride_core/config.py", "catride_core/artifacts.py",
               "catride_core/runtime.py", "catride_core/distances.py"}


@pytest.mark.parametrize(("name", "stage"), list(stage_items()))
def test_stage_depends_on_its_script_and_the_shared_code(name, stage):
    # a change to the distance convention or the command itself must rerun the stage
    script = shlex.split(stage["cmd"])[1]
    assert {script, *SHARED_CODE} <= set(stage["deps"]), SHARED_CODE | {script} - set(stage["deps"])


@pytest.mark.parametrize(("name", "stage"), list(stage_items()))
def test_declared_params_exist(name, stage):
    for key in stage.get("params", []):
        node = PARAMS
        for part in key.split("."):
            assert part in node, f"{name}: params key {key} is not in params.yaml"
            node = node[part]


def test_fan_out_covers_every_defense_and_attack():
    names = {name for name, _ in stage_items()}
    for defense in PARAMS["finetune"]["defenses"]:
        assert {f"finetune@{defense}", f"evaluate_finetuned@{defense}", f"robustness_finetuned@{defense}"} <= names
        assert {f"attack_finetuned@{defense}-{attack}" for attack in PARAMS["attack"]["names"]} <= names
    assert {f"attack@{attack}" for attack in PARAMS["attack"]["names"]} <= names


def test_attack_and_defense_names_agree_with_the_code():
    from catride_core import attacks, config, defenses

    assert tuple(config.ATTACKS) == tuple(attacks.ATTACKS)
    assert set(config.DEFENSES) == set(defenses.DEFENSES)


def test_params_yaml_lists_every_field():
    # params.yaml is the documentation of the defaults: every field appears, with the model's default
    defaults = Params().model_dump(mode="json", by_alias=True)

    def keys(node, prefix=""):
        for key, value in node.items():
            yield prefix + key
            if isinstance(value, dict):
                yield from keys(value, prefix + key + ".")

    assert set(keys(PARAMS)) == set(keys(defaults))
    assert Params.model_validate(PARAMS) == Params()  # and the values are the code's defaults


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
    assert json.loads((work / "metrics" / "benign" / "pretrained.json").read_text())["R@1"] >= 0
    assert "up to date" in dvc(work, "repro").stdout
    # bytecode written beside the code (any test run does it) is not a code change
    cache = work / "catride_core" / "defenses" / "__pycache__"
    cache.mkdir(exist_ok=True)
    (cache / "stray.cpython-311.pyc").write_bytes(b"not code")
    assert "up to date" in dvc(work, "status").stdout
    assert (work / "reports" / "robustness.png").stat().st_size > 0

    # a CA-TRIDE setting reruns the CA-TRIDE branch and the report, nothing else
    params["finetune"]["ca_tride"]["lambda"] = 5.0
    (work / "params.yaml").write_text(yaml.safe_dump(params))
    ran = set(re.findall(r"Running stage '([^']+)'", dvc(work, "repro").stdout))
    attacks = params["attack"]["names"]
    assert ran == {"finetune@ca_tride", "evaluate_finetuned@ca_tride", "robustness_finetuned@ca_tride", "report",
                   *(f"attack_finetuned@ca_tride-{a}" for a in attacks)}, ran

    # a pretrain setting reruns everything but prepare
    params["pretrain"]["margin"] = 0.3
    (work / "params.yaml").write_text(yaml.safe_dump(params))
    ran = set(re.findall(r"Running stage '([^']+)'", dvc(work, "repro").stdout))
    defenses = params["finetune"]["defenses"]
    assert ran == {"pretrain", "evaluate", "robustness", "report", *(f"attack@{a}" for a in attacks),
                   *(f"{stage}@{d}" for d in defenses for stage in ("finetune", "evaluate_finetuned", "robustness_finetuned")),
                   *(f"attack_finetuned@{d}-{a}" for d in defenses for a in attacks)}, ran


# tiny budgets for the real `dvc repro`: one defense and one attack (ES), 8 queries with 2 steps;
# every stage still runs, and the fan-out itself is checked above without running it
TINY_OVERRIDES: dict = {
    "finetune": {"defenses": ["ca_tride"], "epochs": 2, "pairs_per_batch": 16, "steps": 2},
    "attack": {"names": ["es"], "steps": 2, "max_queries": 8, "batch_size": 8},
    "evaluate": {"recall_at": [1]},
}
