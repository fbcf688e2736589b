"""Test helpers shared by several test modules (on the path by pyproject's pytest settings): the
pipeline's stages as DVC expands them, and which params keys a piece of code reads."""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
import yaml
from click.testing import CliRunner
from pydantic import BaseModel

from catride_core import config
from catride_core.commands.report import report

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
            items = stage["foreach"] if isinstance(stage["foreach"], list) else lookup(stage["foreach"][2:-1])
            for item in items:
                yield f"{name}@{item}", substitute(stage["do"], item)
        elif "matrix" in stage:
            axes = {key: lookup(values[2:-1]) if isinstance(values, str) else values for key, values in stage["matrix"].items()}
            body = {k: v for k, v in stage.items() if k != "matrix"}
            for combination in itertools.product(*axes.values()):
                item = dict(zip(axes, combination))
                yield f"{name}@{'-'.join(combination)}", substitute(body, item)
        else:
            yield name, substitute(stage, None)


STAGES = dict(stage_items())


def declared_params(stage_name: str) -> list[str]:
    """The params keys dvc.yaml declares for one (expanded) stage."""
    return STAGES[stage_name].get("params", [])



@contextlib.contextmanager
def recording_params_reads() -> Iterator[set[str]]:
    """Record every params key (``section.key``, ``finetune.ca_tride.miner``) read while the block runs.

    ``parse_params`` (which ``load_params`` calls) is wrapped to label each section
    object with its dotted path, and attribute reads of a field whose value is not
    itself a section are recorded.
    """
    reads: set[str] = set()
    paths: dict[int, str] = {}
    original_parse, original_getattribute = config.parse_params, config.Section.__getattribute__

    def label(section: BaseModel, prefix: str) -> None:
        paths[id(section)] = prefix
        for name in type(section).model_fields:
            value = original_getattribute(section, name)
            if isinstance(value, BaseModel):
                label(value, f"{prefix}{name}.")

    def parse_params(*args, **kwargs):
        params = original_parse(*args, **kwargs)
        label(params, "")
        return params

    def getattribute(self, name):
        value = original_getattribute(self, name)
        if id(self) in paths and name in type(self).model_fields and not isinstance(value, BaseModel):
            reads.add(paths[id(self)] + name)
        return value

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(config, "parse_params", parse_params)
        patch.setattr(config.Section, "__getattribute__", getattribute)
        yield reads


# --- tiny stage runs (the fault-injection tests) ---------------------------------------------------

#: params of a tiny run: 120 digits, 1 epoch, one model and one attack
TINY = {
    "prepare": {"max_per_class": 12},
    "pretrain": {"epochs": 1, "pairs_per_batch": 8, "embedding_dim": 8},
    "evaluate": {"recall_at": [1]},
    "finetune": {"epochs": 1, "pairs_per_batch": 8, "steps": 1},
    "attack": {"names": ["es"], "steps": 1, "max_queries": 4, "batch_size": 4, "save_images": 0},
    "models": ["pretrained"],
    "adaptive": {"queries": 4, "steps": 1, "restarts": 0, "surrogate": "pretrained"},
    "report": {"example_models": ["pretrained"]},
}


def run(command, *args):
    """A stage command in-process, as the CLI runs it (errors become one line and an exit code)."""
    return CliRunner().invoke(command, [str(a) for a in args])


def write_params(folder, overrides=None, base=TINY):
    """``base`` with ``overrides`` laid over it section by section, written to ``folder/params.yaml``."""
    data = {key: dict(value) if isinstance(value, dict) else value for key, value in base.items()}
    for section, values in (overrides or {}).items():
        if isinstance(values, dict) and isinstance(data.get(section), dict):
            data[section].update(values)
        else:
            data[section] = values
    path = folder / "params.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def md5s(*paths):
    """Each file's md5, the hash DVC tracks it by: equal results must be equal files, not only equal values."""
    return [hashlib.md5(Path(path).read_bytes()).hexdigest() for path in paths]


# --- a real dvc in a copy of the project -----------------------------------------------------------

#: what a copy of the project leaves out: environments, DVC state and every stage's outputs
OUTPUTS = {ROOT: {".venv", ".git", ".dvc", "models", "logs", "metrics", "attacks", "bootstrap", "reports",
                  "dvc.lock"},
           ROOT / "data": {"prepared"}}


def ignore_outputs(folder, names):
    """``shutil.copytree`` ignore function: a copy of the project without its outputs."""
    return [n for n in names if n in OUTPUTS.get(Path(folder), set()) or n == "__pycache__"]


# tiny budgets for a real dvc repro: two models (the pretrained one and CA-TRIDE) and one attack (ES), 8 queries
# with 2 steps; every stage kind still runs, and the full fan-out is checked without running it (test_contract.py)
TINY_PIPELINE: dict = {
    "models": ["pretrained", "ca_tride"],
    "prepare": {"max_per_class": 20},
    "pretrain": {"epochs": 1, "pairs_per_batch": 16, "embedding_dim": 16},
    "finetune": {"epochs": 2, "pairs_per_batch": 16, "steps": 2},
    "attack": {"names": ["es"], "steps": 2, "max_queries": 8, "batch_size": 8},
    "evaluate": {"recall_at": [1]},
    "adaptive": {"queries": 4, "steps": 2, "restarts": 1, "surrogate": "pretrained"},
    "report": {"sweep_eps": [0, "8/255"], "sweep_queries": 4, "example_models": ["ca_tride"], "example_queries": 2},
}


def tiny_project(work):
    """A copy of the project in ``work`` without its outputs, params.yaml shrunk to ``TINY_PIPELINE``; its params."""
    shutil.copytree(ROOT, work, ignore=ignore_outputs)
    params = yaml.safe_load((work / "params.yaml").read_text())
    for section, value in TINY_PIPELINE.items():
        params[section] = {**params[section], **value} if isinstance(value, dict) else value
    (work / "params.yaml").write_text(yaml.safe_dump(params))
    return params


def dvc(workdir, *args, check=True):
    """Run the venv's dvc in ``workdir`` (HOME there too, so no user config leaks in).

    The stages run as ``python -m stages.<stage>`` from ``workdir``, so a copy
    imports its own ``catride_core``, not the one the venv's editable install points at.
    """
    bin_dir = Path(sys.executable).parent
    result = subprocess.run([str(bin_dir / "dvc"), *args], cwd=workdir, capture_output=True, text=True,
                            env={"PATH": f"{bin_dir}:/usr/bin:/bin", "HOME": str(workdir)})
    assert not check or result.returncode == 0, f"dvc {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}"
    return result


class Planted:
    """Unpickling this object would create ``marker``: it stands for any code a hostile checkpoint carries."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


# --- what the fault-injection tests check and plant ------------------------------------------------

def printed(result):
    """What a command printed, stripped, without the device line every computing stage prints first."""
    return "\n".join(line for line in result.output.strip().splitlines() if not line.startswith("device: "))


def one_line(result, code, *fragments):
    """The command failed with ``code`` and printed one ``error:`` line holding every fragment (no traceback).

    The stage's device line (``runtime.device_line``, printed first by every computing stage) may precede it.
    """
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert result.exit_code == code, result.output
    lines = printed(result).splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])


def nan_weights(checkpoint, folder):
    """A copy of ``checkpoint`` whose first weight starts with a NaN, as a diverged run leaves it; its path and
    the tensor's name."""
    payload = torch.load(checkpoint, weights_only=True)
    name = next(iter(payload["state_dict"]))
    payload["state_dict"][name].view(-1)[0] = float("nan")
    path = folder / "diverged.pt"
    torch.save(payload, path)
    return path, name


def run_report(root):
    """``catride report`` of the saved results under ``root`` (tests/saved_results.py) into ``root/reports``."""
    (root / "params.yaml").write_text("models: [pretrained, tride, ca_tride]\nadaptive:\n  surrogate: pretrained\nreport:\n  example_models: [ca_tride]\n")
    out = root / "reports"
    return run(report, "--params", root / "params.yaml", "--metrics", root / "metrics", "--bootstrap",
               root / "bootstrap", "--table", out / "robustness.csv", "--tradeoff", out / "tradeoff.csv",
               "--markdown", out / "index.md", "--html", out / "index.html", "--figures", out / "figures",
               "--commit", "abc123")
