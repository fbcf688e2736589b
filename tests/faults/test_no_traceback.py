"""Issue 19, point 2: a user's mistake is one line naming the file or key, never a traceback, and writes nothing."""

import contextlib
import json
import os
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml
from saved_results import write_results
from support import nan_weights, one_line, run, run_report, write_params

from catride_core.artifacts import files
from catride_core.artifacts.prepared import load_prepared
from catride_core.artifacts.training_state import TrainingState
from catride_core.commands.attack import attack
from catride_core.commands.common import identity_params
from catride_core.commands.curves import curves
from catride_core.commands.evaluate import evaluate
from catride_core.commands.finetune import finetune
from catride_core.commands.prepare import prepare
from catride_core.commands.preset import preset
from catride_core.commands.pretrain import pretrain
from catride_core.commands.seeds import seeds
from catride_core.config import load_params
from catride_core.models import build_model
from catride_core.progress import Progress


def test_an_absurd_embedding_dim_is_a_params_error_not_an_allocation(tmp_path):
    params = write_params(tmp_path, {"pretrain": {"embedding_dim": 10**11}})
    one_line(run(prepare, "--params", params, "--out", tmp_path / "prepared"), 2,
             "params.yaml: pretrain.embedding_dim: must be <= 8192, got 100000000000")
    assert not (tmp_path / "prepared").exists()


@pytest.mark.parametrize(("attack_name", "key", "count", "fragment"), [
    ("qa_plus", "candidates_per_query", 50, "the gallery holds 19 other items"),
    ("qa_minus", "candidates_per_query", 5, "QA- draws them from the top-1% of the gallery: 1 item"),
    ("ca_plus", "queries_per_candidate", 20, "the gallery holds 19 other items"),
    ("ca_minus", "queries_per_candidate", 2, "CA- draws them from the top-1% of the gallery: 1 item"),
])
def test_more_attack_targets_than_the_gallery_holds_is_a_params_error_before_attacking(
        tiny, tmp_path, attack_name, key, count, fragment):
    params = write_params(tmp_path, {"attack": {"names": [attack_name], "steps": 1, "max_queries": 4, "batch_size": 4,
                                                "save_images": 0, key: count}})
    result = run(attack, "--params", params, "--data", tiny["data"], "--checkpoint", tiny["model"],
                 "--out", tmp_path / "attacks", "--no-progress")
    one_line(result, 2, f"params.yaml: attack.{key}: {count} ", fragment)
    assert not (tmp_path / "attacks").exists()


@pytest.mark.parametrize("fault", ["no_params", "no_pretrain_section", "params_a_string", "no_state"])
def test_a_start_checkpoint_without_the_params_pretrain_recorded_is_named(tiny, tmp_path, fault):
    payload = torch.load(tiny["model"], weights_only=True)
    if fault == "no_params":
        del payload["params"]
    elif fault == "no_pretrain_section":
        del payload["params"]["pretrain"]
    elif fault == "params_a_string":
        payload["params"] = "pretrain"
    else:
        del payload["state"]
    start = tmp_path / "foreign.pt"
    torch.save(payload, start)
    for model in ("pretrained", "ca_tride"):
        result = run(finetune, "--params", tiny["params"], "--data", tiny["data"], "--start", start, "--model", model,
                     "--checkpoint", tmp_path / "out.pt", "--log", tmp_path / "log.csv", "--no-progress")
        one_line(result, 1, "foreign.pt: not a checkpoint written by pretrain")
    assert not (tmp_path / "out.pt").exists() and not (tmp_path / "log.csv").exists()


def test_nan_weights_in_evaluate_are_named_before_any_work(tiny, tmp_path):
    path, name = nan_weights(tiny["model"], tmp_path)
    result = run(evaluate, "--params", tiny["params"], "--data", tiny["data"], "--checkpoint", path,
                 "--metrics", tmp_path / "m.json")
    one_line(result, 1, f"diverged.pt: the weights hold NaN or inf ({name})")
    assert not (tmp_path / "m.json").exists()


# --- the report's metrics files ------------------------------------------------------------------------

@pytest.mark.parametrize(("kind", "fault", "fragment"), [
    ("robustness", "no_adversarial", "'adversarial' is missing or not a mapping"),
    ("robustness", "no_ERS", "'ERS' is missing"),
    ("robustness", "text_ERS", "'ERS' holds 'high', not a number"),
    ("robustness", "text_score", "'adversarial.ES:R' holds 'low', not a number"),
    ("benign", "no_R@1", "'R@1' is missing"),
    ("benign", "text_R@1", "'R@1' holds 'x', not a number"),
])
def test_report_names_a_metrics_file_missing_a_key_or_holding_text(tmp_path, kind, fault, fragment):
    root = write_results(tmp_path)
    path = root / "metrics" / kind / "ca_tride.json"
    metrics = json.loads(path.read_text())
    if fault.startswith("no_"):
        del metrics[fault[3:]]
    elif fault == "text_score":
        metrics["adversarial"]["ES:R"] = "low"
    else:
        metrics[fault[5:]] = "high" if kind == "robustness" else "x"
    path.write_text(json.dumps(metrics))
    one_line(run_report(root), 1, f"{path}: {fragment}")
    assert not list(root.glob("reports/*"))  # the folder is made, before any work, to check it is writable


# --- catride seeds on a malformed `dvc exp show --json` ------------------------------------------------

def revision(name, seed, r1):
    params = {"base": {"seed": seed}, "models": ["pretrained"], "adaptive": {"surrogate": "pretrained"}, "report": {"example_models": ["pretrained"]}}
    return {"rev": name, "name": name, "data": {"params": {"params.yaml": {"data": params}},
                                                "metrics": {"metrics/benign/pretrained.json": {"data": {"R@1": r1}}}}}


@pytest.mark.parametrize(("exp_show", "fragment"), [
    (["workspace", "main"], "entry 0 is a str, not a revision"),
    ([revision("workspace", "zero", 80.0), revision("main", 1, 81.0)], "workspace: base.seed 'zero' is not a seed"),
    ([revision("workspace", 0, float("nan")), revision("main", 1, 81.0)],
     "workspace: metrics/benign/pretrained.json: 'R@1' is not a finite number"),
    ([revision("workspace", 0, 80.0), {**revision("main", 1, 81.0), "experiments": "exp-a"}],
     "main: experiments: expected a list of revisions, got str"),
])
def test_seeds_names_a_malformed_exp_show(tmp_path, exp_show, fragment):
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({"base": {"seed": 0}, "models": ["pretrained"], "adaptive": {"surrogate": "pretrained"}, "report": {"example_models": ["pretrained"]}}))
    exp_json = tmp_path / "exp.json"
    exp_json.write_text(json.dumps(exp_show))  # NaN is written bare, as Python's json writes it
    result = run(seeds, "--params", params, "--exp-json", exp_json, "--table", tmp_path / "s.csv",
                 "--markdown", tmp_path / "s.md")
    one_line(result, 1, f"{exp_json}: {fragment}")
    assert not (tmp_path / "s.csv").exists() and not (tmp_path / "s.md").exists()


# --- catride preset on an empty or non-mapping file -----------------------------------------------------

@pytest.mark.parametrize(("params_text", "preset_text", "at_fault", "fragment"), [
    ("", "prepare:\n  dataset: cub\n", "params", "empty"),
    ("- base\n- prepare\n", "prepare:\n  dataset: cub\n", "params", "expected a mapping of sections, got a list"),
    ("base:\n  seed: 0\n", "", "preset", "empty"),
    ("base:\n  seed: 0\n", "- prepare\n", "preset", "expected a mapping of sections, got a list"),
    ("base:\n  seed: 0\n", "just words\n", "preset", "expected a mapping of sections, got a str"),
])
@pytest.mark.parametrize("root", [False, True])
def test_preset_names_an_empty_or_non_mapping_file(tmp_path, params_text, preset_text, at_fault, fragment, root):
    params, chosen = tmp_path / "params.yaml", tmp_path / "chosen.yaml"
    params.write_text(params_text)
    chosen.write_text(preset_text)
    result = run(preset, "--params", params, chosen, *(["--root", tmp_path] if root else []))
    one_line(result, 2, f"{params if at_fault == 'params' else chosen}: {fragment}")
    assert params.read_text() == params_text


# --- the resumable training state ---------------------------------------------------------------------

def pretrain_with_state(tiny, tmp_path, state, **params):
    return run(pretrain, "--params", write_params(tmp_path, params), "--data", tiny["data"],
               "--checkpoint", tmp_path / "m.pt", "--log", tmp_path / "log.csv", "--state", state, "--no-progress")


def test_a_resume_folder_that_is_a_file_is_found_before_training(tiny, tmp_path):
    (tmp_path / ".resume").write_text("a file where the state's folder should be")
    one_line(pretrain_with_state(tiny, tmp_path, tmp_path / ".resume" / "m.pt"), 1,
             ".resume/m.pt: cannot be written")
    assert not (tmp_path / "m.pt").exists() and not (tmp_path / "log.csv").exists()


def test_a_read_only_resume_folder_is_found_before_training(tiny, tmp_path, monkeypatch):
    folder = tmp_path / ".resume"
    folder.mkdir()
    folder.chmod(0o555)
    if os.access(folder, os.W_OK):  # root writes into read-only folders: the system's refusal is injected instead
        refuse = files.tempfile.TemporaryFile

        def read_only(*args, dir=None, **kwargs):
            if Path(dir) == folder:
                raise PermissionError(13, "Permission denied")
            return refuse(*args, dir=dir, **kwargs)

        monkeypatch.setattr(files.tempfile, "TemporaryFile", read_only)
    try:
        one_line(pretrain_with_state(tiny, tmp_path, folder / "m.pt"), 1,
                 ".resume/m.pt: cannot be written (Permission denied)")
    finally:
        folder.chmod(0o755)
    assert not (tmp_path / "m.pt").exists()


def test_a_full_disk_while_saving_the_state_is_named(tiny, tmp_path, monkeypatch):
    @contextlib.contextmanager
    def on_a_full_disk(target, directory=False):
        yield Path("/dev/full")  # every write to it fails with ENOSPC, as on a full disk

    monkeypatch.setattr(files, "atomic_path", on_a_full_disk)
    result = pretrain_with_state(tiny, tmp_path, tmp_path / "m.state", base={"checkpoint_every": 1})
    one_line(result, 1, "m.state: cannot be written (No space left on device)")
    assert not (tmp_path / "m.pt").exists() and not (tmp_path / "log.csv").exists()


@pytest.mark.parametrize("fault", ["no_progress", "no_model", "model_a_string", "progress_a_list",
                                   "progress_without_step", "optimizer_of_another_model"])
def test_a_damaged_state_of_the_right_identity_is_named(tiny, tmp_path, fault):
    params_path = write_params(tmp_path)
    params, data = load_params(params_path), load_prepared(tiny["data"])
    # the identity pretrain gives its state (commands/pretrain.py), so that the state is taken as this run's
    identity = {"stage": "pretrain", "params": identity_params(params, "base", "prepare", "pretrain", "evaluate"),
                "data": data.meta["files"]}
    model = build_model(params.pretrain.arch, params.pretrain.embedding_dim)
    optimizer = torch.optim.Adam(model.parameters())
    state = tmp_path / "m.state"
    TrainingState(state, identity).save(model, optimizer, None, Progress(epoch=0, batch=3, step=3))
    payload = torch.load(state, weights_only=True)
    if fault == "no_progress":
        del payload["progress"]
    elif fault == "no_model":
        del payload["model"]
    elif fault == "model_a_string":
        payload["model"] = "weights"
    elif fault == "progress_a_list":
        payload["progress"] = [0, 3, 3]
    elif fault == "progress_without_step":
        del payload["progress"]["step"]
    else:
        payload["optimizer"] = torch.optim.Adam(torch.nn.Linear(2, 2).parameters()).state_dict()
    torch.save(payload, state)
    result = pretrain_with_state(tiny, tmp_path, state)
    one_line(result, 1, "m.state: a damaged training state", "delete it to start the run over")
    assert not (tmp_path / "m.pt").exists() and state.exists()


# --- the eps sweep ------------------------------------------------------------------------------------

def test_curves_names_a_sweep_csv_with_a_nan_eps(tmp_path):
    (tmp_path / "params.yaml").write_text("models: [pretrained]\nadaptive:\n  surrogate: pretrained\nreport:\n  example_models: [pretrained]\n"
                                          "  sweep_attacks: [es]\n")
    (tmp_path / "sweeps").mkdir()
    path = tmp_path / "sweeps" / "pretrained.csv"
    pd.DataFrame({"eps": [0.0, float("nan")], "ES:D": [0.0, 0.5], "ES:D/clean": [0.0, 0.0], "ES:R": [50.0, 40.0],
                  "ES:R/clean": [50.0, 50.0], "n_queries": [4, 4]}).to_csv(path, index=False)
    result = run(curves, "--params", tmp_path / "params.yaml", "--sweeps", tmp_path / "sweeps",
                 "--table", tmp_path / "curves.csv", "--figure", tmp_path / "curves.png")
    one_line(result, 1, f"{path}: column eps holds values that are not finite")
    assert not (tmp_path / "curves.csv").exists() and not (tmp_path / "curves.png").exists()
