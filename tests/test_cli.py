"""Each stage command on tiny data in tmp_path: it runs, writes what dvc.yaml declares, fails cleanly."""

import json

import pandas as pd
import pytest
import torch
import yaml
from click.testing import CliRunner

from catride_core import artifacts
from catride_core.attacks import ATTACKS
from catride_core.cli import attack, evaluate, finetune, main, prepare, pretrain, report, robustness

TINY = {
    "prepare": {"dataset": "mnist5k", "max_per_class": 30},
    "pretrain": {"epochs": 2, "pairs_per_batch": 16, "embedding_dim": 32},
    "evaluate": {"recall_at": [1, 2], "block_size": 20},
    "finetune": {"defenses": ["ca_tride"], "epochs": 2, "pairs_per_batch": 16, "steps": 2},
    "attack": {"steps": 2, "max_queries": 12, "batch_size": 5, "save_images": 3},
}


def write_params(folder, data):
    path = folder / "params.yaml"
    path.write_text(yaml.safe_dump(data))
    return str(path)


def invoke(command, *args):
    result = CliRunner().invoke(command, [str(a) for a in args], catch_exceptions=False)
    return result


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    """prepare -> pretrain -> evaluate on 300 mnist5k digits."""
    root = tmp_path_factory.mktemp("run")
    params = write_params(root, TINY)
    paths = {
        "params": params,
        "data": root / "data" / "prepared",
        "checkpoint": root / "models" / "pretrained.pt",
        "log": root / "logs" / "pretrain.csv",
        "metrics": root / "metrics" / "benign" / "pretrained.json",
    }
    paths |= {
        "finetuned": root / "models" / "ca_tride.pt",
        "finetune_log": root / "logs" / "ca_tride.csv",
        "metrics_dir": root / "metrics",
        "report": root / "reports" / "robustness.md",
    }
    data, common = paths["data"], ("--params", params)
    outputs = [
        invoke(prepare, *common, "--out", data),
        invoke(pretrain, *common, "--data", data, "--checkpoint", paths["checkpoint"], "--log", paths["log"],
               "--no-progress"),
        invoke(evaluate, *common, "--data", data, "--checkpoint", paths["checkpoint"], "--metrics", paths["metrics"]),
        invoke(finetune, *common, "--data", data, "--pretrained", paths["checkpoint"], "--defense", "ca_tride",
               "--checkpoint", paths["finetuned"], "--log", paths["finetune_log"], "--no-progress"),
        invoke(evaluate, *common, "--data", data, "--checkpoint", paths["finetuned"],
               "--metrics", root / "metrics" / "benign" / "ca_tride.json"),
    ]
    for model, checkpoint in (("pretrained", paths["checkpoint"]), ("ca_tride", paths["finetuned"])):
        for name in ATTACKS:
            outputs.append(invoke(attack, *common, "--data", data, "--checkpoint", checkpoint, "--name", name,
                                  "--out", root / "attacks" / model / f"{name}.json",
                                  "--images", root / "attacks" / model / f"{name}.pt", "--no-progress"))
        outputs.append(invoke(robustness, *common, "--benign", root / "metrics" / "benign" / f"{model}.json",
                              "--attacks", root / "attacks" / model,
                              "--out", root / "metrics" / "robustness" / f"{model}.json"))
    outputs.append(invoke(report, *common, "--metrics", root / "metrics", "--table", root / "reports" / "robustness.csv",
                          "--markdown", paths["report"], "--figure", root / "reports" / "robustness.png"))
    return paths, outputs


def test_stages_run_and_write_their_outputs(pipeline):
    paths, outputs = pipeline
    assert all(o.exit_code == 0 for o in outputs), [o.output for o in outputs if o.exit_code]
    data = artifacts.load_prepared(paths["data"])
    assert len(data.manifest) == 300 and data.meta["n_test"] == 60 and data.images.shape == (300, 1, 28, 28)
    log = pd.read_csv(paths["log"])
    assert list(log["epoch"]) == [1, 2] and {"loss", "R@1", "step", "collapseness", "spread"} <= set(log.columns)
    metrics = json.loads(paths["metrics"].read_text())
    assert {"R@1", "R@2", "mAP", "mAP@R", "NMI", "collapseness", "spread"} <= set(metrics)
    assert all(0.0 <= metrics[k] <= 100.0 for k in ("R@1", "R@2", "mAP", "mAP@R", "NMI"))


def test_finetune_log_and_checkpoint(pipeline):
    paths, _ = pipeline
    log = pd.read_csv(paths["finetune_log"])
    assert list(log["epoch"]) == [1, 2]
    # step-size ramp: epoch 1 (t = 0) is benign, so its inner PGD takes no step
    assert log["pgd_steps"].iloc[0] == 0 and {"adv_loss", "anp", "collapseness", "R@1"} <= set(log.columns)
    _, payload = artifacts.load_checkpoint(paths["finetuned"])
    assert payload["params"]["finetune"]["defense"] == "ca_tride"
    assert payload["params"]["finetune"]["ca_tride"]["lambda"] == 10.0
    assert payload["params"]["pretrain"]["epochs"] == 2  # the pretrained model's params travel along
    assert payload["state"]["step"] == 2 * 15 and payload["state"]["defense_state"] == {}


def test_attack_results_robustness_and_report(pipeline):
    paths, _ = pipeline
    root = paths["metrics_dir"].parent
    es = json.loads((root / "attacks" / "pretrained" / "es.json").read_text())
    assert es["n_queries"] == 12 and set(es["adversarial"]) == {"ES:D", "ES:R"}
    assert es["clean"]["ES:D"] == 0.0 and es["adversarial"]["ES:D"] > 0.0
    assert torch.load(root / "attacks" / "pretrained" / "es.pt").shape == (3, 1, 28, 28)
    robust = json.loads((root / "metrics" / "robustness" / "ca_tride.json").read_text())
    assert 0.0 <= robust["ERS"] <= 100.0 and 0.0 <= robust["ARS"] <= 100.0 and len(robust["adversarial"]) == 10
    table = pd.read_csv(root / "reports" / "robustness.csv")
    assert list(table["model"]) == ["pretrained", "ca_tride"] and {"ERS", "ARS", "CA+", "GTT", "NMI"} <= set(table)
    text = paths["report"].read_text()
    assert "by ERS:" in text and "| ca_tride |" in text
    assert (root / "reports" / "robustness.png").read_bytes()[:4] == b"\x89PNG"


def test_robustness_of_a_subset_of_attacks_reports_no_composite(pipeline, tmp_path):
    paths, _ = pipeline
    params = write_params(tmp_path, {**TINY, "attack": {**TINY["attack"], "names": ["es"]}})
    out = tmp_path / "robust.json"
    result = invoke(robustness, "--params", params, "--benign", paths["metrics"],
                    "--attacks", paths["metrics_dir"].parent / "attacks" / "pretrained", "--out", out)
    assert result.exit_code == 0
    robust = json.loads(out.read_text())
    assert robust["ERS"] is None and robust["ARS"] is None and set(robust["adversarial"]) == {"ES:D", "ES:R"}


def test_checkpoint_carries_resolved_params_and_state(pipeline):
    paths, _ = pipeline
    model, payload = artifacts.load_checkpoint(paths["checkpoint"])
    assert payload["params"]["pretrain"]["epochs"] == 2
    assert payload["params"]["prepare"]["max_per_class"] == 30
    assert payload["state"] == {"epoch": 2, "step": 2 * 15}  # 240 train anchors / 16 pairs = 15 steps an epoch
    assert not model.training and model(torch.rand(1, 1, 28, 28)).shape == (1, 32)


def test_bad_params_exit_2_and_write_nothing(tmp_path):
    params = write_params(tmp_path, {"pretrain": {"epochs": 0}})
    out = tmp_path / "prepared"
    result = CliRunner().invoke(prepare, ["--params", params, "--out", str(out)])
    assert result.exit_code == 2
    assert result.output.strip().endswith("pretrain.epochs: must be >= 1, got 0")
    assert not out.exists()


def test_missing_input_is_one_clear_line(tmp_path, pipeline):
    paths, _ = pipeline
    result = CliRunner().invoke(
        evaluate, ["--params", paths["params"], "--data", str(tmp_path), "--checkpoint", str(paths["checkpoint"]),
                   "--metrics", str(tmp_path / "m.json")],
    )
    assert result.exit_code == 1 and "manifest.csv: missing" in result.output
    assert not (tmp_path / "m.json").exists()


def test_every_command_has_help():
    for name, command in main.commands.items():
        result = CliRunner().invoke(main, [name, "--help"])
        assert result.exit_code == 0 and command.help and "--params" in result.output
