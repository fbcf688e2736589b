"""A real `dvc repro` on tiny data, in a copy of the project: what a change reruns, and determinism."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pandas as pd
import pytest
import yaml
from click.testing import CliRunner
from support import dvc, tiny_project

from catride_core.commands.evaluate import evaluate
from catride_core.commands.prepare import prepare
from catride_core.commands.pretrain import pretrain


def test_same_params_give_byte_identical_metrics(tmp_path):
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({
        "prepare": {"max_per_class": 20}, "pretrain": {"epochs": 1, "pairs_per_batch": 16, "embedding_dim": 16},
    }))
    outputs = []
    for run in ("a", "b"):
        d = tmp_path / run
        for command, args in (
            (prepare, ["--out", d / "data"]),
            (pretrain, ["--data", d / "data", "--checkpoint", d / "m.pt", "--log", d / "log.csv", "--no-progress"]),
            (evaluate, ["--data", d / "data", "--checkpoint", d / "m.pt", "--metrics", d / "metrics.json"]),
        ):
            result = CliRunner().invoke(command, ["--params", str(params), *map(str, args)], catch_exceptions=False)
            assert result.exit_code == 0, result.output
        outputs.append((d / "metrics.json").read_bytes())
    assert outputs[0] == outputs[1]


def changed_stages(work):
    """The stages `dvc status` reports as changed (their deps, params or outs differ from dvc.lock)."""
    status = json.loads(dvc(work, "status", "--json").stdout or "{}")
    return set(status)


def ran_stages(work):
    return set(re.findall(r"Running stage '([^']+)'", dvc(work, "repro").stdout))


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new, 1))


@pytest.mark.slow
def test_dvc_repro_reruns_only_what_a_change_touches(tmp_path):
    """A real `dvc repro` in a copy of the project, on 20 digits a class and tiny budgets."""
    work = tmp_path / "project"
    params = tiny_project(work)
    subprocess.run(["git", "init", "-q"], cwd=work, check=True)
    dvc(work, "init", "-q")
    dvc(work, "config", "core.analytics", "false")
    dvc(work, "repro")
    assert json.loads((work / "metrics" / "benign" / "pretrained.json").read_text())["R@1"] >= 0
    assert (work / "attacks" / "ca_tride" / "es.csv").read_text().startswith("index,")
    assert (work / "bootstrap" / "ca_tride.csv").read_text().startswith("ERS,ARS,ES:D,ES:R\n")
    assert "up to date" in dvc(work, "repro").stdout
    # bytecode written beside the code (any test run does it) is not a code change
    cache = work / "catride_core" / "defenses" / "__pycache__"
    cache.mkdir(exist_ok=True)
    (cache / "stray.cpython-311.pyc").write_bytes(b"not code")
    assert changed_stages(work) == set()

    # a command's help text is that stage's code alone
    edit(work / "catride_core" / "commands" / "report.py", '"""The comparison of every model:', '"""The comparison of all models:')
    assert changed_stages(work) == {"report"}
    # a dataset reader is prepare's code alone
    edit(work / "catride_core" / "data" / "cub.py", '"""', '"""Edited. ')
    assert changed_stages(work) == {"report", "prepare"}
    assert ran_stages(work) == {"report", "prepare"}  # prepare's output is unchanged, so nothing after it reruns

    # a CA-TRIDE setting reruns the CA-TRIDE branch and the report, nothing else (but `check`, after any change
    # of params.yaml)
    params["finetune"]["ca_tride"]["inverse_temperature"] = 5.0
    (work / "params.yaml").write_text(yaml.safe_dump(params))
    assert ran_stages(work) == {"check", "finetune@ca_tride", "evaluate@ca_tride", "attack@ca_tride",
                                "adaptive@ca_tride", "robustness@ca_tride", "report", "sweep@ca_tride", "curves",
                                "examples@ca_tride"}

    # an interval setting reruns every model's intervals (benign ones in evaluate, robustness ones) and the report,
    # no training and no attack
    params["robustness"]["confidence"] = 0.9
    (work / "params.yaml").write_text(yaml.safe_dump(params))
    assert ran_stages(work) == {"check", "evaluate@pretrained", "evaluate@ca_tride", "robustness@pretrained",
                                "robustness@ca_tride", "report"}

    # a pretrain setting reruns everything but prepare
    params["pretrain"]["margin"] = 0.3
    (work / "params.yaml").write_text(yaml.safe_dump(params))
    models = params["models"]
    assert ran_stages(work) == {"check", "pretrain", "report", "curves", "examples@ca_tride",
                                *(f"{kind}@{m}" for m in models
                                  for kind in ("finetune", "evaluate", "attack", "adaptive", "robustness", "sweep"))}

    # a sweep setting reruns the sweeps, their curves and the report that shows them, nothing else
    params["report"]["sweep_queries"] = 3
    (work / "params.yaml").write_text(yaml.safe_dump(params))
    assert ran_stages(work) == {"check", "curves", "report", *(f"sweep@{m}" for m in models)}
    assert set(pd.read_csv(work / "reports" / "sweep.csv")["n_queries"]) == {3}
    plots = json.loads(dvc(work, "plots", "show", "--json").stdout)["data"]
    for plot in ("sweep_robust_r1", "sweep_ca_plus"):  # drawn from the two models' files (the others are absent)
        values = plots[plot][0]["content"]["data"]["values"]
        assert len(values) == 2 * 2 and {"eps", "ES:R", "CA+"} <= set(values[0])
