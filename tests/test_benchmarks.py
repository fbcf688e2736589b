"""The benchmark scripts run: each at its smallest size in a subprocess, printing its tables (no figure is checked)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from support import ROOT

from catride_core.names import ATTACKS


def run_script(*args: str) -> str:
    # the scripts import catride_core: this checkout's, whatever the venv's editable install points at
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    result = subprocess.run([sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


@pytest.mark.slow
def test_gpu_benchmark_smoke_runs_on_cpu():
    out = run_script("benchmarks/gpu.py", "--tiny")
    assert "| step | precision | step time | images/s | inner PGD steps | peak GPU memory |" in out
    for step in ("benign", "CA-TRIDE CAP", "CA-TRIDE ANP", "ACT"):
        for precision in ("fp32", "bf16"):
            assert f"| {step} | {precision} | " in out, (step, precision)
    assert "| attack | seconds (8 queries) | queries/s |" in out
    assert all(f"| {name} | " in out for name in ATTACKS)
    assert "| projection | fp32 | bf16 |" in out and "| CUB CA-TRIDE fine-tuning: 75 epochs" in out
    assert "| n/a |" in out and "pipeline determinism" in out


@pytest.mark.slow
def test_input_pipeline_benchmark_smoke_runs():
    out = run_script("benchmarks/input_pipeline.py", "--images", "48", "--pairs-per-batch", "8", "--batches", "1",
                     "--workers", "1")
    assert "| path | one item, train | one item, test |" in out
    assert "| files (PIL decode + resize every epoch) | " in out and "| decode cache (mmap + crop) | " in out
    assert "| building the cache | |" in out


def test_reference_quirks_script_prints_each_quirk_beside_catrides_value(tmp_path):
    # a prepared mnist5k subset and an untrained c2f2: the script's table, not its numbers, is what is checked here
    import yaml
    from click.testing import CliRunner

    from catride_core.commands.prepare import prepare
    from catride_core.commands.pretrain import pretrain

    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({"prepare": {"dataset": "mnist5k", "max_per_class": 10},
                                      "pretrain": {"epochs": 0, "embedding_dim": 16}}))
    for command, args in ((prepare, ["--out", tmp_path / "data"]),
                          (pretrain, ["--data", tmp_path / "data", "--checkpoint", tmp_path / "start.pt",
                                      "--log", tmp_path / "log.csv", "--no-progress"])):
        result = CliRunner().invoke(command, [str(a) for a in ["--params", params, *args]], catch_exceptions=False)
        assert result.exit_code == 0, result.output
    out = run_script("benchmarks/reference_quirks.py", "--data", str(tmp_path / "data"),
                     "--checkpoint", str(tmp_path / "start.pt"), "--queries", "6", "--steps", "2")
    assert "| column | catride | with the quirk | difference | catride's 95 % half-width |" in out
    assert all(f"| {column} | " in out for column in ("GTM", "ES:D", "LTM"))
