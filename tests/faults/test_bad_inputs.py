"""Points 3-6: every bad input is refused before work, with one line naming the file or key, exit 1 or 2."""

import json

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from support import one_line, run, write_params

from catride_core.commands.attack import attack
from catride_core.commands.evaluate import evaluate
from catride_core.commands.prepare import prepare
from catride_core.commands.pretrain import pretrain
from catride_core.commands.robustness import robustness
from catride_core.models import build_model


def evaluate_with(tiny, checkpoint, tmp_path):
    return run(evaluate, "--params", tiny["params"], "--data", tiny["data"], "--checkpoint", checkpoint,
               "--metrics", tmp_path / "m.json")


# --- 3. checkpoints ------------------------------------------------------------------------------

@pytest.mark.parametrize("content", [b"", b"random bytes, not a checkpoint", "truncated"])
def test_broken_checkpoints_are_named(tiny, tmp_path, content):
    path = tmp_path / "broken.pt"
    path.write_bytes(tiny["model"].read_bytes()[:2000] if content == "truncated" else content)
    one_line(evaluate_with(tiny, path, tmp_path), 1, "broken.pt: not a readable checkpoint")
    assert not (tmp_path / "m.json").exists()


def test_checkpoint_without_state_dict_or_with_a_header_that_disagrees(tiny, tmp_path):
    payload = torch.load(tiny["model"], weights_only=True)
    path = tmp_path / "odd.pt"
    torch.save({k: v for k, v in payload.items() if k != "state_dict"}, path)
    one_line(evaluate_with(tiny, path, tmp_path), 1, "odd.pt: not a catride checkpoint")
    torch.save({**payload, "model": {"arch": "c2f2", "embedding_dim": 64}}, path)
    one_line(evaluate_with(tiny, path, tmp_path), 1, "odd.pt: weights do not fit the model its header names")


def test_checkpoint_of_another_architecture_than_the_data_takes(tiny, tmp_path):
    path = tmp_path / "resnet.pt"
    payload = torch.load(tiny["model"], weights_only=True)
    model = build_model("resnet18", 8)
    torch.save({**payload, "model": {"arch": "resnet18", "embedding_dim": 8}, "state_dict": model.state_dict()}, path)
    one_line(evaluate_with(tiny, path, tmp_path), 1, "resnet.pt: resnet18 takes 3-channel 224 px images",
             "1-channel 28 px")


# --- 4. model against data -------------------------------------------------------------------------

def test_pretraining_a_224px_model_on_28px_digits_is_a_params_error(tiny, tmp_path):
    params = write_params(tmp_path, {"pretrain": {"arch": "resnet18"}})
    result = run(pretrain, "--params", params, "--data", tiny["data"], "--checkpoint", tmp_path / "m.pt",
                 "--log", tmp_path / "log.csv", "--no-progress")
    one_line(result, 2, "pretrain.arch 'resnet18' does not fit prepare.dataset 'mnist5k'")
    assert not (tmp_path / "m.pt").exists()


# --- 5. degenerate settings -------------------------------------------------------------------------

@pytest.mark.parametrize(("overrides", "fragment"), [
    ({"prepare": {"test_fraction": 0.99}}, "the split leaves no train item"),
    ({"prepare": {"max_per_class": 3, "test_fraction": 0.5}}, "classes with a single item"),
    ({"models": ["pretrained", "hm", "hm"]}, "models: names must not repeat; repeated: hm"),
    ({"attack": {"names": ["es", "es"]}}, "attack.names: names must not repeat; repeated: es"),
    ({"models": ["pretrained", "fgsm"]}, "models.1: must be one of"),
    ({"pretrain": {"lr": float("inf")}}, "pretrain.lr: input should be a finite number"),
    ({"pretrain": {"margin": float("nan")}}, "pretrain.margin: input should be a finite number"),
    ({"pretrain": {"epochs": True}}, "pretrain.epochs: must be a number, not true/false"),
    ({"base": {"seed": 2**63}}, "base.seed: must be <= 4294967295"),
    ({"prepare": {"root": "~/CUB"}}, "prepare.root: write the folder without '~'"),
])
def test_degenerate_settings_are_params_errors(tmp_path, overrides, fragment):
    params = write_params(tmp_path, overrides)
    one_line(run(prepare, "--params", params, "--out", tmp_path / "prepared"), 2, "params.yaml", fragment)
    assert not (tmp_path / "prepared").exists()


def test_a_class_left_with_one_item_is_named_by_its_class_name(tmp_path):
    folder = tmp_path / "images"
    for name, count in (("cat", 4), ("dog", 4), ("owl", 1), ("fox", 4)):
        (folder / name).mkdir(parents=True)
        for i in range(count):
            Image.new("RGB", (8, 8), (i * 40, 0, 0)).save(folder / name / f"{i}.png")
    params = write_params(tmp_path, {"prepare": {"dataset": "folder", "root": str(folder), "split": "class_disjoint",
                                                 "test_fraction": 0.5}})
    result = run(prepare, "--params", params, "--out", tmp_path / "prepared")
    one_line(result, 2, "'owl' (label 3)")  # class folders are indexed in sorted order: cat, dog, fox, owl


def test_an_empty_params_file_is_refused(tmp_path):
    (tmp_path / "params.yaml").write_text("")
    one_line(run(prepare, "--params", tmp_path / "params.yaml", "--out", tmp_path / "p"), 2, "params.yaml: empty")


def test_cuda_without_a_gpu_is_a_params_error(tiny, tmp_path, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # also on a machine with a GPU
    params = write_params(tmp_path, {"base": {"device": "cuda"}})
    result = run(evaluate, "--params", params, "--data", tiny["data"], "--checkpoint", tiny["model"],
                 "--metrics", tmp_path / "m.json")
    one_line(result, 2, "base.device: 'cuda' asked for, but CUDA is not usable here: ", "use auto or cpu")
    assert not (tmp_path / "m.json").exists()


def test_recall_deeper_than_the_gallery_is_a_params_error(tiny, tmp_path):
    params = write_params(tmp_path, {"evaluate": {"recall_at": [1, 500]}})
    result = run(evaluate, "--params", params, "--data", tiny["data"], "--checkpoint", tiny["model"],
                 "--metrics", tmp_path / "m.json")
    one_line(result, 2, "evaluate.recall_at: R@500 asked of a gallery of")
    assert not (tmp_path / "m.json").exists()


def test_no_saved_images_is_a_complete_attack_result(tiny, tmp_path):
    result = run(attack, "--params", tiny["params"], "--data", tiny["data"], "--checkpoint", tiny["model"],
                 "--out", tmp_path / "attacks", "--no-progress")
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (tmp_path / "attacks").iterdir()) == ["es.csv", "es.json"]


# --- 6. prepared data and results -------------------------------------------------------------------

def copy_prepared(tiny, tmp_path):
    target = tmp_path / "prepared"
    target.mkdir()
    for f in tiny["data"].iterdir():
        (target / f.name).write_bytes(f.read_bytes())
    return target


@pytest.mark.parametrize("fault", ["deleted", "truncated", "foreign", "manifest_columns", "manifest_rows"])
def test_broken_prepared_data_is_named(tiny, tmp_path, fault):
    data = copy_prepared(tiny, tmp_path)
    if fault == "deleted":
        (data / "images.npy").unlink()
    elif fault == "truncated":
        (data / "images.npy").write_bytes((data / "images.npy").read_bytes()[:500])
    elif fault == "foreign":
        np.save(data / "images.npy", np.zeros((3, 1, 28, 28), np.uint8))
    elif fault == "manifest_columns":
        (data / "manifest.csv").write_text("index,label\n0,1\n")
    else:
        lines = (data / "manifest.csv").read_text().splitlines()
        (data / "manifest.csv").write_text("\n".join(lines[:-3]) + "\n")
    name = "manifest.csv" if fault.startswith("manifest") else "images.npy"
    result = run(evaluate, "--params", tiny["params"], "--data", data, "--checkpoint", tiny["model"],
                 "--metrics", tmp_path / "m.json")
    one_line(result, 1, f"{name}: ")
    assert "missing" in result.output or "changed since prepare wrote it" in result.output


@pytest.fixture
def attack_folder(tiny, tmp_path):
    params = write_params(tmp_path, {"attack": {"names": ["es", "gtm"]}})
    folder = tmp_path / "attacks"
    assert run(attack, "--params", params, "--data", tiny["data"], "--checkpoint", tiny["model"],
               "--out", folder, "--no-progress").exit_code == 0
    benign = tmp_path / "benign.json"
    benign.write_text(json.dumps({"R@1": 90.0, "spread": 1.0}))
    return params, folder, benign


@pytest.mark.parametrize(("fault", "fragment"), [
    ("missing_score", "es.json: 'adversarial' holds the scores ['ES:D'], es reports ['ES:D', 'ES:R']"),
    ("nan", "es.json: holds NaN, which is not JSON"),
    ("other_attack", "es.json: holds attack 'gtm', expected 'es'"),
])
def test_robustness_refuses_a_broken_attack_result(attack_folder, tmp_path, fault, fragment):
    params, folder, benign = attack_folder
    es = json.loads((folder / "es.json").read_text())
    if fault == "missing_score":
        del es["adversarial"]["ES:R"]
        (folder / "es.json").write_text(json.dumps(es))
    elif fault == "nan":
        (folder / "es.json").write_text(json.dumps({**es, "adversarial": {**es["adversarial"], "ES:R": float("nan")}}))
    else:
        (folder / "es.json").write_text((folder / "gtm.json").read_text())
    result = run(robustness, "--params", params, "--benign", benign, "--attacks", folder, "--out", tmp_path / "r.json",
                 "--bootstrap", tmp_path / "b.csv")
    one_line(result, 1, fragment)
    assert not (tmp_path / "r.json").exists() and not (tmp_path / "b.csv").exists()


def rewrite_csv(path, edit):
    """Apply ``edit`` to the lines of a per-query CSV (header first)."""
    path.write_text("\n".join(edit(path.read_text().splitlines())) + "\n")


def fewer_queries(folder):
    """es.json and es.csv of a consistent run on the first 3 queries only, beside gtm's on all of them."""
    rewrite_csv(folder / "es.csv", lambda lines: lines[:4])
    table = pd.read_csv(folder / "es.csv")
    es = json.loads((folder / "es.json").read_text())
    means = {side: {score: round(table[f"{score}/{side}"].mean(), 4) for score in es[side]} for side in ("clean", "adversarial")}
    (folder / "es.json").write_text(json.dumps({**es, **means, "n_queries": 3}))


@pytest.mark.parametrize(("fault", "fragment"), [
    ("deleted", "es.csv: missing; run the stage that writes it first"),
    ("unreadable", "es.csv: not a readable CSV file"),
    ("no_column", "es.csv: lacks the columns ['ES:R/adversarial']"),
    ("text", "es.csv: the columns ['ES:D/clean'] hold something other than numbers"),
    ("no_row", "es.csv: the rows are not the 4 attacked queries 0..3 in order"),
    ("nan", "es.csv: column ES:D/adversarial holds values that are not finite"),
    ("other_run", "es.csv: the mean of column ES:D/adversarial is"),
    ("fewer_queries", "the attacks were run on different numbers of queries {'es': 3, 'gtm': 4}"),
])
def test_robustness_refuses_broken_per_query_results(attack_folder, tmp_path, fault, fragment):
    params, folder, benign = attack_folder
    path = folder / "es.csv"
    shift = pd.read_csv(path)["ES:D/adversarial"]
    if fault == "deleted":
        path.unlink()
    elif fault == "unreadable":
        path.write_text('index,"ES:D/clean\n0,1\n')  # a quote left open: the parser reaches the end inside it
    elif fault == "no_column":
        pd.read_csv(path).drop(columns="ES:R/adversarial").to_csv(path, index=False)
    elif fault == "text":
        pd.read_csv(path).assign(**{"ES:D/clean": "far"}).to_csv(path, index=False)
    elif fault == "no_row":
        rewrite_csv(path, lambda lines: lines[:-1])
    elif fault == "nan":
        pd.read_csv(path).assign(**{"ES:D/adversarial": [np.nan, *shift[1:]]}).to_csv(path, index=False)
    elif fault == "other_run":
        pd.read_csv(path).assign(**{"ES:D/adversarial": shift + 0.01}).to_csv(path, index=False)
    else:
        fewer_queries(folder)
    result = run(robustness, "--params", params, "--benign", benign, "--attacks", folder, "--out", tmp_path / "r.json",
                 "--bootstrap", tmp_path / "b.csv")
    one_line(result, 1, fragment)
    assert not (tmp_path / "r.json").exists() and not (tmp_path / "b.csv").exists()


def test_robustness_of_a_good_attack_folder_writes_both_outputs(attack_folder, tmp_path):
    params, folder, benign = attack_folder  # the control of the two tests above
    result = run(robustness, "--params", params, "--benign", benign, "--attacks", folder, "--out", tmp_path / "r.json",
                 "--bootstrap", tmp_path / "b.csv")
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "r.json").read_text())["bootstrap"]["queries"] == 4
    assert list(pd.read_csv(tmp_path / "b.csv").columns) == ["ERS", "ARS", "ES:D", "ES:R", "GTM"]
