"""benchmarks/fashion_table.py: its projection arithmetic, its choice of rows, its one-line refusals, and a
dry run on tiny IDX files (no GPU, no clone, no DVC)."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys

import pytest
import torch
from layouts import make_idx
from support import ROOT

SCRIPT = ROOT / "benchmarks" / "fashion_table.py"


@pytest.fixture
def table(monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))  # the script imports its timing helpers from gpu.py
    spec = importlib.util.spec_from_file_location("fashion_table", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "fashion_table", module)  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def run_script(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    return subprocess.run([sys.executable, str(SCRIPT), *map(str, args)], check=False, cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)


def test_projection_of_a_row_is_steps_times_step_time_plus_evaluations_plus_attacks(table):
    sizes = table.Sizes(train_items=60_000, test_items=10_000, queries=10_000, pairs_per_batch=128, epochs=8,
                        attacks=("ca_plus", "es"))
    measured = table.Throughput(step={"act": 0.5}, epoch_evaluation=3.0, evaluation=10.0, gallery=2.0,
                                attack_batch={"ca_plus": 5.0, "es": 3.0, "gtt": 99.0}, batch_queries=250)
    row = table.project_row("act", sizes, measured)
    # ceil(60,000 / 128) = 469 steps an epoch (the last holds 96 pairs): 8 x (469 x 0.5 s + 3 s per-epoch evaluation)
    assert row.training == pytest.approx(8 * (469 * 0.5 + 3.0)) == pytest.approx(1900.0)
    assert row.evaluation == 10.0
    # the gallery once, then 10,000 queries at (5 + 3) s per 250 queries; gtt is not among the attacks run
    assert row.attacks == pytest.approx(2.0 + 10_000 * 8.0 / 250) == pytest.approx(322.0)
    assert row.total == pytest.approx(2232.0)
    # `pretrained` trains for zero epochs: its finetune stage evaluates the test set once
    assert table.project_row("pretrained", sizes, measured).training == 3.0


def test_rows_are_taken_in_order_while_they_fit(table):
    rows = [("none", 100.0), ("est", 500.0), ("act", 300.0), ("hm", 60.0)]
    assert table.choose_rows(rows, 450.0) == [
        ("none", None), ("est", "projected 8.3 min, 5.8 min of the budget left"), ("act", None),
        ("hm", "projected 1.0 min, 0.8 min of the budget left"),
    ]
    assert table.choose_rows(rows, None) == [(model, None) for model, _ in rows]


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_cuda_without_a_gpu_is_one_line_and_exit_2(tmp_path):
    result = run_script("--root", make_idx(tmp_path / "idx"), "--device", "cuda", "--dry-run")
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.startswith("error: --device cuda: CUDA is not usable here: ") and result.stderr.count("\n") == 1


def test_a_folder_that_is_not_its_workspace_is_refused(tmp_path):
    foreign = tmp_path / "mine"
    (foreign / "notes").mkdir(parents=True)
    result = run_script("--root", make_idx(tmp_path / "idx"), "--device", "cpu", "--workspace", foreign)
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.startswith(f"error: --workspace {foreign}: exists and is not a clone of")
    assert result.stderr.count("\n") == 1 and sorted(p.name for p in foreign.iterdir()) == ["notes"]


@pytest.mark.slow
def test_dry_run_on_tiny_idx_files_prints_the_projection(tmp_path):
    root = make_idx(tmp_path / "idx", n_train=40, n_test=20)
    result = run_script("--root", root, "--device", "cpu", "--dry-run", "--models", "none,act", "--max-queries", 5,
                        "--timing-steps", 1)
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout
    # 40 training items make one SPC-2 batch of 40 pairs; the preset's 8 epochs, every attack of its list
    assert "| row | inner steps | step time | training: 8 epochs x 1 steps | evaluate | attacks: 12 x 5 queries |" in out
    rows = [line for line in out.splitlines() if line.startswith(("| none |", "| act |"))]
    assert [line.split(" | ")[:2] for line in rows] == [["| none", "-"], ["| act", "32"]]
    # the explicit reduction is said on every row
    assert all(line.endswith("| REDUCED: attacks on 5 of 20 queries |") for line in rows)
    assert "training steps of 80 images" in out and "all rows: " in out
    assert not (ROOT / "fashion_table").exists()
