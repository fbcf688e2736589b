"""The benchmark scripts run: each at its smallest size in a subprocess, printing its tables (no figure is checked);
and the GPU benchmark's determinism report."""

from __future__ import annotations

import csv
import importlib.util
import os
import subprocess
import sys
import warnings

import numpy as np
import pytest
import torch
from support import ROOT

from catride_core.names import ATTACKS

STEP_KINDS = ("none (benign)", "EST", "ACT", "HM", "TRIDE CAP", "TRIDE ANP", "CA-TRIDE CAP", "CA-TRIDE ANP")


def run_script(*args: str) -> str:
    # the scripts import catride_core: this checkout's, whatever the venv's editable install points at
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    result = subprocess.run([sys.executable, *args], check=False, cwd=ROOT, env=env, capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


@pytest.mark.slow
def test_gpu_benchmark_smoke_runs_on_cpu(tmp_path):
    out = run_script("benchmarks/gpu.py", "--tiny", "--out", str(tmp_path / "rows.csv"))
    assert out.startswith("device: cpu")  # runtime.device_line first
    for part in ("cub", "fashion"):
        for kind in STEP_KINDS:
            assert f"| {part}: step {kind} | fp32 | runs; bit-identical twice |" in out, (part, kind)
        assert all(f"| {part}: attack {name} | fp32 | runs; bit-identical twice |" in out for name in ATTACKS)
    assert all(f"| cub: step {kind} | bf16 | runs; bit-identical twice |" in out for kind in STEP_KINDS)
    assert "| row | setting | seconds | throughput | PGD steps | peak GPU memory | note |" in out
    for kind in STEP_KINDS:
        assert all(f"| {kind} | {precision} | " in out for precision in ("fp32", "bf16")), kind
    assert all(f"| {name} | fp32 | " in out for name in ATTACKS)
    assert "| per-epoch evaluation (epoch_metrics), 16 images | fp32 | " in out
    assert "| CUB ca_tride: 75 epochs x 105 steps, 12 attacks x 5,924 queries | fp32 | " in out
    assert "| SOP ca_tride: 75 epochs x 1064 steps, 12 attacks x 60,502 queries | bf16 | " in out
    assert "| Fashion-MNIST hm: 8 epochs x 469 steps, 12 attacks x 10,000 queries | fp32 | " in out
    assert "| CA-TRIDE CAP, 2 processes (gloo) | fp32 | " in out and "the same weights on both processes" in out
    assert "| n/a |" in out and "every row ran and every check held" in out
    rows = list(csv.DictReader((tmp_path / "rows.csv").open()))
    assert {row["section"] for row in rows} == {"determinism", "steps", "test set", "attacks", "projection", "ddp"}
    assert len(rows) == out.count("\n| ") - out.count("\n| ---") - out.count("\n| row |") - out.count(
        "\n| check |") - out.count("\n| projection |")  # every printed row, once


@pytest.fixture
def gpu(monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    spec = importlib.util.spec_from_file_location("gpu", ROOT / "benchmarks" / "gpu.py")
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "gpu", module)  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def strict():
    before = torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled()
    torch.use_deterministic_algorithms(True)
    yield
    torch.use_deterministic_algorithms(before[0], warn_only=before[1])


@pytest.mark.filterwarnings("ignore:index_add_cuda_:UserWarning")  # the strict run meets it first
def test_gpu_benchmark_names_every_op_without_a_deterministic_kernel(gpu, strict, tmp_path, capsys):
    # put_ has no deterministic kernel on the CPU either; the warning stands for a second such op met before it
    table = gpu.Table(tmp_path / "rows.csv", 0.0)
    tensor = torch.zeros(4)

    def step():
        warnings.warn("index_add_cuda_ does not have a deterministic implementation, but you set ...", stacklevel=1)
        tensor.put_(torch.tensor([0]), torch.tensor([1.0]))

    gpu.check(table, "cub: step X", "fp32", step, lambda: None, gpu.step_differences)
    assert "| cub: step X | fp32 | **raises: put_ (and index_add_cuda_)** |" in capsys.readouterr().out
    assert torch.are_deterministic_algorithms_enabled() and not torch.is_deterministic_algorithms_warn_only_enabled()
    results = iter([{"targets": np.array([1, 2])}, {"targets": np.array([1, 3])}])
    gpu.check(table, "cub: attack Y", "fp32", lambda: next(results), lambda: None, gpu.attack_differences)
    assert "| cub: attack Y | fp32 | **NOT bit-identical: targets differ** |" in capsys.readouterr().out
    assert len(table.failures) == 2 and [row["note"] for row in csv.DictReader((tmp_path / "rows.csv").open())] == [
        "raises: put_ (and index_add_cuda_)", "NOT bit-identical: targets differ"]


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
