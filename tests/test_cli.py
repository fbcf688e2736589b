"""Each stage command on tiny data in tmp_path: it runs, writes what dvc.yaml declares, fails cleanly."""

import json

import pandas as pd
import pytest
import torch
import yaml
from click.testing import CliRunner

from catride_core import artifacts
from catride_core.cli import evaluate, main, prepare, pretrain

TINY = {
    "prepare": {"dataset": "mnist5k", "max_per_class": 30},
    "pretrain": {"epochs": 2, "pairs_per_batch": 16, "embedding_dim": 32},
    "evaluate": {"recall_at": [1, 2], "block_size": 20},
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
        "metrics": root / "metrics" / "benign.json",
    }
    outputs = [
        invoke(prepare, "--params", params, "--out", paths["data"]),
        invoke(pretrain, "--params", params, "--data", paths["data"], "--checkpoint", paths["checkpoint"],
               "--log", paths["log"], "--no-progress"),
        invoke(evaluate, "--params", params, "--data", paths["data"], "--checkpoint", paths["checkpoint"],
               "--metrics", paths["metrics"]),
    ]
    return paths, outputs


def test_stages_run_and_write_their_outputs(pipeline):
    paths, outputs = pipeline
    assert [o.exit_code for o in outputs] == [0, 0, 0], [o.output for o in outputs]
    data = artifacts.load_prepared(paths["data"])
    assert len(data.manifest) == 300 and data.meta["n_test"] == 60 and data.images.shape == (300, 1, 28, 28)
    log = pd.read_csv(paths["log"])
    assert list(log["epoch"]) == [1, 2] and {"loss", "R@1", "step"} <= set(log.columns)
    metrics = json.loads(paths["metrics"].read_text())
    assert {"R@1", "R@2", "mAP", "mAP@R", "NMI"} <= set(metrics)
    assert all(0.0 <= v <= 100.0 for v in metrics.values())


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
