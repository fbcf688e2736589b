"""Points 8-10: an output that cannot be written is found before the work; a non-finite step stops training
where it happens; an interrupted stage leaves no partial or temporary file; DVC gives the old outputs back."""

import json
import shutil
import signal
import subprocess
import sys
import time

import pytest
import torch
import yaml
from support import ROOT, dvc, ignore_outputs, run, write_params

from catride_core.commands import pretrain as pretrain_module
from catride_core.commands.attack import attack
from catride_core.commands.pretrain import pretrain
from catride_core.training import StepOutput


def test_an_output_under_a_file_is_found_before_training(tiny, tmp_path):
    (tmp_path / "models").write_text("a file where a folder should be")
    params = write_params(tmp_path, {"pretrain": {"epochs": 50}})  # would take minutes if it trained
    start = time.perf_counter()
    result = run(pretrain, "--params", params, "--data", tiny["data"], "--checkpoint", tmp_path / "models" / "m.pt",
                 "--log", tmp_path / "log.csv", "--no-progress")
    assert result.exit_code == 1 and "models/m.pt: cannot be written" in result.output
    assert time.perf_counter() - start < 20 and not (tmp_path / "log.csv").exists()


def test_a_non_finite_loss_stops_training_at_its_step_and_writes_nothing(tiny, tmp_path, monkeypatch):
    benign = pretrain_module.benign_step

    def diverging(model, images, labels, ctx):
        out = benign(model, images, labels, ctx)
        return StepOutput(out.loss * float("nan"), out.stats) if ctx.step == 3 else out

    monkeypatch.setattr(pretrain_module, "benign_step", diverging)
    params = write_params(tmp_path, {"pretrain": {"epochs": 2}})  # 96 train items / 8 pairs: 12 steps an epoch
    result = run(pretrain, "--params", params, "--data", tiny["data"], "--checkpoint", tmp_path / "m.pt",
                 "--log", tmp_path / "log.csv", "--no-progress")
    assert result.exit_code == 1
    assert "training went non-finite at epoch 1, global step 3: loss = nan" in result.output
    assert not (tmp_path / "m.pt").exists() and not (tmp_path / "log.csv").exists()


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_stops_a_stage_promptly_leaving_no_file(tiny, tmp_path, signum):
    params = write_params(tmp_path, {"pretrain": {"epochs": 200}})
    out = tmp_path / "out"
    out.mkdir()
    (out / ".m.pt.catride-tmp-left").write_bytes(b"stale")  # a killed run's: cleaned when m.pt is written next
    stage = subprocess.Popen(
        [sys.executable, str(ROOT / "stages" / "pretrain.py"), "--params", str(params), "--data", str(tiny["data"]),
         "--checkpoint", str(out / "m.pt"), "--log", str(out / "log.csv"), "--no-progress"],
        stderr=subprocess.PIPE, text=True,
    )
    deadline = time.time() + 60  # well into training: once the first epoch's state is saved
    while not (out / ".resume" / "m.pt").exists() and time.time() < deadline and stage.poll() is None:
        time.sleep(0.1)
    assert stage.poll() is None, stage.stderr.read()
    sent = time.perf_counter()
    stage.send_signal(signum)
    _, stderr = stage.communicate(timeout=30)
    assert time.perf_counter() - sent < 10
    assert stage.returncode == 130
    assert stderr.strip().splitlines()[-1] == f"interrupted by {signum.name}: stopped, no output written"
    # no output and no temporary; what remains is the resumable state of the epochs done, complete
    assert sorted(p.name for p in out.iterdir()) == [".m.pt.catride-tmp-left", ".resume"]
    assert [p.name for p in (out / ".resume").iterdir()] == ["m.pt"]
    assert torch.load(out / ".resume" / "m.pt", weights_only=True)["progress"]["epoch"] >= 1


def test_a_stale_temporary_of_an_output_is_removed_when_it_is_written(tiny, tmp_path):
    (tmp_path / ".attacks.catride-tmp-abc123").mkdir()
    (tmp_path / ".attacks.catride-tmp-abc123" / "es.json").write_text("{half")
    result = run(attack, "--params", tiny["params"], "--data", tiny["data"], "--checkpoint", tiny["model"],
                 "--out", tmp_path / "attacks", "--no-progress")
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["attacks"]


@pytest.mark.slow
def test_dvc_tracks_the_dataset_root_and_gives_back_outputs_a_failed_run_removed(tmp_path):
    from layouts import make_folder

    work = tmp_path / "project"
    shutil.copytree(ROOT, work, ignore=ignore_outputs)
    images = make_folder(work / "data" / "images", per_class=3)
    params = yaml.safe_load((work / "params.yaml").read_text())
    params["prepare"].update(dataset="folder", root="data/images", split="class_disjoint", test_fraction=0.34)
    (work / "params.yaml").write_text(yaml.safe_dump(params))
    subprocess.run(["git", "init", "-q"], cwd=work, check=True)
    dvc(work, "init", "-q")
    dvc(work, "repro", "prepare")
    meta = (work / "data" / "prepared" / "meta.json").read_text()
    assert json.loads(dvc(work, "status", "--json", "prepare").stdout or "{}") == {}

    # a changed image under prepare.root: prepare is no longer up to date
    (images / "mango" / "img0.jpg").write_bytes((images / "apple" / "img1.jpg").read_bytes())
    assert "prepare" in json.loads(dvc(work, "status", "--json", "prepare").stdout)
    (images / "mango" / "img0.jpg").unlink()
    dvc(work, "repro", "prepare")
    meta = (work / "data" / "prepared" / "meta.json").read_text()

    # a failing run: DVC removes the outputs before running the stage; `dvc checkout` gives them back
    params["prepare"]["max_per_class"] = 1
    (work / "params.yaml").write_text(yaml.safe_dump(params))
    failed = dvc(work, "repro", "prepare", check=False)
    assert failed.returncode != 0 and "prepare.max_per_class: must be >= 2" in failed.stderr + failed.stdout
    assert not (work / "data" / "prepared").exists()
    dvc(work, "checkout", "prepare")
    assert (work / "data" / "prepared" / "meta.json").read_text() == meta
