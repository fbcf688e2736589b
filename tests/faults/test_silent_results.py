"""Issue 19 point 3: inputs that used to give a silent wrong result now stop with one line naming the file or key."""

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml
from layouts import make_folder
from saved_results import write_results
from support import ROOT, dvc, one_line, run, tiny_project, write_params

from catride_core.artifacts.files import read_json, write_json
from catride_core.attacks.sweep import wide
from catride_core.commands.curves import curves
from catride_core.commands.prepare import prepare
from catride_core.commands.preset import preset
from catride_core.commands.report import report
from catride_core.errors import ArtifactError
from catride_core.report.seeds import experiment_runs

# --- params ---------------------------------------------------------------------------------------

@pytest.mark.parametrize(("overrides", "fragment"), [
    # the examples stage fans out over example_models: a name outside `models` drew from a stale checkpoint
    ({"models": ["pretrained", "hm"], "report": {"example_models": ["hm", "ca_tride"]}},
     "report.example_models: ['ca_tride'] not in models: no stage writes their checkpoints"),
    # an adversarial defense without inner PGD steps trains on clean images: benign training under its name
    ({"finetune": {"steps": 0}}, "finetune.steps: must be >= 1, got 0"),
    ({"base": {"seed": True}}, "base.seed: must be a number, not true/false"),
    ({"evaluate": {"recall_at": [True, 2]}}, "evaluate.recall_at.0: must be a number, not true/false"),
    ({"report": {"sweep_eps": [0, True]}}, "report.sweep_eps.1: must be a number, not true/false"),
    ({"atack": {"eps": 0.1}}, "atack: unknown key"),
])
def test_a_setting_that_would_run_wrongly_is_a_params_error(tmp_path, overrides, fragment):
    params = write_params(tmp_path, overrides)
    one_line(run(prepare, "--params", params, "--out", tmp_path / "prepared"), 2, "params.yaml: ", fragment)
    assert not (tmp_path / "prepared").exists()


@pytest.mark.parametrize(("text", "fragment"), [
    ("base:\n  seed: 1\n  device: cpu\n  seed: 2\n", "params.yaml: line 4: 'seed' repeated"),
    ("base:\n  seed: 1\nprepare: {}\nbase:\n  seed: 2\n", "params.yaml: line 4: 'base' repeated"),
])
def test_a_repeated_key_is_refused_not_the_last_one_kept(tmp_path, text, fragment):
    (tmp_path / "params.yaml").write_text(text)  # YAML would keep the last value; DVC refuses the file
    one_line(run(prepare, "--params", tmp_path / "params.yaml", "--out", tmp_path / "p"), 2, fragment)


def test_the_whole_params_file_is_checked_whenever_it_changes():
    # DVC reruns a stage only when a key it declares changes: a key no stage declares (a typo) is read by `check`
    check = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]["check"]
    assert "params.yaml" in check["deps"] and "--params params.yaml" in check["cmd"]


@pytest.mark.slow
def test_dvc_repro_fails_on_a_key_no_stage_declares(tmp_path):
    work = tmp_path / "project"
    params = tiny_project(work)
    subprocess.run(["git", "init", "-q"], cwd=work, check=True)
    dvc(work, "init", "-q")
    dvc(work, "repro", "check")
    (work / "params.yaml").write_text(yaml.safe_dump({**params, "atack": {"eps": 0.1}}))
    failed = dvc(work, "repro", "check", check=False)
    assert failed.returncode != 0 and "params.yaml: atack: unknown key" in failed.stderr + failed.stdout


@pytest.mark.parametrize("seed", [True, 1.0, "1"])
def test_a_run_whose_seed_is_not_a_whole_number_is_not_counted_as_one(seed):
    # as `dvc exp show --json` lists a run: its params.yaml under data.params
    listed = [{"rev": "workspace", "name": "exp-true", "data": {"params": {"params.yaml": {"data": {"base": {"seed": seed}}}}}}]
    with pytest.raises(ArtifactError, match=rf"dvc exp show --json: exp-true: base.seed {re.escape(repr(seed))} is not a seed"):
        experiment_runs(listed)


# --- metrics JSON ---------------------------------------------------------------------------------

def test_a_non_finite_metric_is_not_written_as_bare_nan(tmp_path):
    with pytest.raises(ArtifactError, match=r"m.json: R@1, adversarial.ES:R are not finite numbers"):
        write_json(tmp_path / "m.json", {"R@1": float("nan"), "adversarial": {"ES:R": float("inf"), "ES:D": 1.0}})
    assert not (tmp_path / "m.json").exists()


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_a_metrics_file_holding_bare_nan_is_refused(tmp_path, constant):
    (tmp_path / "m.json").write_text(f'{{"R@1": {constant}}}')
    with pytest.raises(ArtifactError, match=rf"m.json: holds {constant}, which is not JSON"):
        read_json(tmp_path / "m.json")


# --- the report's inputs --------------------------------------------------------------------------

def report_of(root):
    (root / "params.yaml").write_text("models: [pretrained, tride, ca_tride]\nadaptive:\n  surrogate: pretrained\nreport:\n  example_models: [ca_tride]\n")
    out = root / "reports"
    return run(report, "--params", root / "params.yaml", "--metrics", root / "metrics", "--bootstrap",
               root / "bootstrap", "--logs", root / "logs", "--table", out / "robustness.csv", "--tradeoff",
               out / "tradeoff.csv", "--markdown", out / "index.md", "--html", out / "index.html", "--figures",
               out / "figures", "--commit", "abc123")


def edit_csv(path, edit):
    edit(pd.read_csv(path)).to_csv(path, index=False)


@pytest.mark.parametrize(("fault", "fragment"), [
    ("bootstrap_header", "bootstrap/ca_tride.csv: lacks the columns ['ERS']"),
    ("bootstrap_text", "bootstrap/ca_tride.csv: the columns ['ERS'] hold something other than numbers"),
    ("bootstrap_nan", "bootstrap/ca_tride.csv: column ERS holds values that are not finite"),
    ("adversarial_nan", "robustness/ca_tride.json: holds NaN, which is not JSON"),
    ("adversarial_null", "robustness/ca_tride.json: 'adversarial.CA+' holds None, not a number"),
    ("adversarial_missing", "robustness/ca_tride.json: gives ERS and ARS, but the adversarial scores ['CA+'] are not"),
    ("log_column", "finetune/ca_tride.csv: lacks the columns ['collapseness']"),
    ("log_text", "finetune/ca_tride.csv: the columns ['R@1'] hold something other than numbers"),
    ("pretrain_log_column", "logs/pretrain.csv: lacks the columns ['loss']"),
])
def test_report_refuses_an_input_it_would_show_wrongly(tmp_path, fault, fragment):
    root = write_results(tmp_path)
    robustness = root / "metrics" / "robustness" / "ca_tride.json"
    if fault == "bootstrap_header":  # the header lost its first name: no ERS, and every column shifted
        path = root / "bootstrap" / "ca_tride.csv"
        path.write_text(path.read_text().replace("ERS,", "", 1))
    elif fault == "bootstrap_text":
        edit_csv(root / "bootstrap" / "ca_tride.csv", lambda t: t.assign(ERS="high"))
    elif fault == "bootstrap_nan":
        edit_csv(root / "bootstrap" / "ca_tride.csv", lambda t: t.assign(ERS=float("nan")))
    elif fault.startswith("adversarial"):
        metrics = json.loads(robustness.read_text())
        if fault == "adversarial_missing":
            del metrics["adversarial"]["CA+"]
        else:
            metrics["adversarial"]["CA+"] = float("nan") if fault == "adversarial_nan" else None
        robustness.write_text(json.dumps(metrics))
    elif fault == "log_column":
        edit_csv(root / "logs" / "finetune" / "ca_tride.csv", lambda t: t.drop(columns="collapseness"))
    elif fault == "log_text":
        edit_csv(root / "logs" / "finetune" / "ca_tride.csv", lambda t: t.assign(**{"R@1": ["86.0", "eighty"]}))
    else:
        edit_csv(root / "logs" / "pretrain.csv", lambda t: t.drop(columns="loss"))
    one_line(report_of(root), 1, fragment)
    assert not [path for path in (root / "reports").rglob("*") if path.is_file()]


def test_report_of_good_inputs_compares_with_resamples(tmp_path):
    root = write_results(tmp_path)  # the control of the test above
    result = report_of(root)
    assert result.exit_code == 0, result.output
    assert "no bootstrap resamples" not in (root / "reports" / "index.md").read_text()


def sweep(tmp_path, broken=None):
    folder = tmp_path / "sweep"
    folder.mkdir(parents=True)
    rows = [{"eps": eps, "attack": attack, "score": score, "clean": 50.0, "adversarial": 50.0 - 100 * eps,
             "n_queries": 4} for eps in (0.0, 8 / 255) for attack, score in (("es", "ES:D"), ("es", "ES:R"), ("ca_plus", "CA+"))]
    for model in ("none", "ca_tride"):
        table = wide(pd.DataFrame(rows))
        if model == broken:
            table = table.drop(columns=["CA+", "CA+/clean"])
        table.to_csv(folder / f"{model}.csv", index=False)
    (tmp_path / "params.yaml").write_text("models: [none, ca_tride]\nreport:\n  example_models: [ca_tride]\n")
    return run(curves, "--params", tmp_path / "params.yaml", "--sweeps", folder, "--table", tmp_path / "s.csv",
               "--figure", tmp_path / "s.png")


def test_curves_refuse_a_sweep_without_the_scores_of_its_attacks(tmp_path):
    assert sweep(tmp_path / "good").exit_code == 0  # the control
    one_line(sweep(tmp_path / "bad", broken="ca_tride"), 1, "sweep/ca_tride.csv: lacks the columns ['CA+', 'CA+/clean']")
    assert not (tmp_path / "bad" / "s.csv").exists()


# --- preset --root ---------------------------------------------------------------------------------

@pytest.mark.parametrize(("root", "fragment"), [
    ("missing", "--root {path}: no such folder"),
    ("file", "--root {path}: not a folder"),
    ("", "--root '': empty; give the folder of your copy of the dataset"),
])
def test_preset_refuses_a_root_that_is_not_a_folder(tmp_path, root, fragment):
    (tmp_path / "presets").mkdir()
    (tmp_path / "presets" / "mine.yaml").write_text("prepare:\n  dataset: folder\n  split: class_disjoint\n")
    params = tmp_path / "params.yaml"
    params.write_text("prepare:\n  dataset: mnist5k\n")
    (tmp_path / "file").write_text("not a folder")
    path = str(tmp_path / root) if root else root
    one_line(run(preset, "--params", params, "mine", "--root", path), 2, fragment.format(path=path))
    assert params.read_text() == "prepare:\n  dataset: mnist5k\n"


# --- folder datasets -------------------------------------------------------------------------------

@pytest.mark.parametrize(("fault", "fragment"), [
    ("empty", "apple/img0.jpg: image is empty (0 bytes)"),
    ("outside", "apple/img0.jpg: links to {outside}, outside the dataset root"),
    ("dangling", "apple/img0.jpg: a link to {outside}, which does not exist"),
])
def test_a_folder_dataset_refuses_an_image_it_would_read_wrongly(tmp_path, fault, fragment):
    root = make_folder(tmp_path / "images", per_class=4)
    image, outside = root / "apple" / "img0.jpg", tmp_path / "elsewhere.jpg"
    if fault == "empty":
        image.write_bytes(b"")
    else:
        outside.write_bytes(image.read_bytes())
        image.unlink()
        image.symlink_to(outside)
        if fault == "dangling":
            outside.unlink()
    params = write_params(tmp_path, {"prepare": {"dataset": "folder", "root": str(root), "split": "class_disjoint",
                                                 "test_fraction": 0.34, "max_per_class": None}})
    result = run(prepare, "--params", params, "--out", tmp_path / "prepared")
    assert result.exit_code == 1, result.output  # one line, then the expected layout
    assert result.output.startswith(f"error: folder: {root}/" + fragment.format(outside=outside)), result.output
    assert not (tmp_path / "prepared").exists()


def test_a_link_inside_the_dataset_root_is_read(tmp_path):
    root = make_folder(tmp_path / "images", per_class=4)
    (root / "apple" / "img3.jpg").unlink()
    (root / "apple" / "img3.jpg").symlink_to(root / "mango" / "img0.jpg")
    params = write_params(tmp_path, {"prepare": {"dataset": "folder", "root": str(root), "split": "class_disjoint",
                                                 "test_fraction": 0.34, "max_per_class": None}})
    result = run(prepare, "--params", params, "--out", tmp_path / "prepared")
    assert result.exit_code == 0, result.output


# --- a stage whose parent is killed ---------------------------------------------------------------

#: a parent as DVC is one: it starts the stage command with DVC_STAGE set and waits for it
PARENT = """
import os, subprocess, sys
stage = subprocess.Popen(sys.argv[2:], stderr=open(sys.argv[1], "w"), env={**os.environ, "DVC_STAGE": "pretrain"})
print(stage.pid, flush=True)
stage.wait()
"""


def alive(pid):
    """Whether a process runs (a zombie left for its new parent to reap has stopped)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[1][0] != "Z"
    except FileNotFoundError:
        return False


def test_a_stage_stops_when_its_parent_is_killed(tiny, tmp_path):
    params = write_params(tmp_path, {"pretrain": {"epochs": 200}})
    out, stderr = tmp_path / "out", tmp_path / "stage.err"
    parent = subprocess.Popen(
        [sys.executable, "-c", PARENT, str(stderr), sys.executable, "-m", "stages.pretrain", "--params", str(params),
         "--data", str(tiny["data"]), "--checkpoint", str(out / "m.pt"), "--log", str(out / "log.csv"),
         "--no-progress"], cwd=ROOT, stdout=subprocess.PIPE, text=True,
    )
    stage = int(parent.stdout.readline())
    deadline = time.time() + 60  # in training: once the first epoch's state is saved
    while not (out / ".resume" / "m.pt").exists() and time.time() < deadline:
        time.sleep(0.1)
    assert (out / ".resume" / "m.pt").exists(), stderr.read_text()
    parent.send_signal(signal.SIGTERM)  # the parent alone, as `kill <pid of dvc repro>` does
    assert parent.wait(timeout=10) == -signal.SIGTERM

    deadline = time.time() + 20
    while alive(stage) and time.time() < deadline:
        time.sleep(0.1)
    if alive(stage):
        os.kill(stage, signal.SIGKILL)
        pytest.fail("the stage outlived its parent and was still training")
    assert stderr.read_text().strip().splitlines()[-1] == "interrupted by SIGTERM: stopped, no output written"
    assert sorted(p.name for p in out.iterdir()) == [".resume"]
