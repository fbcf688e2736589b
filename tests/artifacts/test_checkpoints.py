"""Checkpoints round-trip, load without running code, and refuse what is not a checkpoint of this format."""

import pytest
import torch
from support import Planted

from catride_core.artifacts.checkpoints import (
    load_checkpoint,
    read_checkpoint,
    save_checkpoint,
)
from catride_core.errors import ArtifactError
from catride_core.models import build_model


@pytest.fixture
def checkpoint(tmp_path):
    torch.manual_seed(0)
    model = build_model("c2f2", 8)
    path = tmp_path / "model.pt"
    save_checkpoint(path, model, {"pretrain": {"epochs": 1}}, {"epoch": 1, "step": 3})
    return path, model


def test_round_trip_gives_the_same_weights_in_eval_mode(checkpoint):
    path, model = checkpoint
    loaded, payload = load_checkpoint(path)
    assert not loaded.training and payload["state"] == {"epoch": 1, "step": 3}
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), loaded.state_dict().values()))



def test_a_checkpoint_holding_code_is_refused_without_running_it(checkpoint, tmp_path):
    path, _ = checkpoint
    payload = torch.load(path, weights_only=True)
    marker = tmp_path / "ran"
    payload["params"] = {"evil": Planted(marker)}
    torch.save(payload, path)
    with pytest.raises(ArtifactError, match="refused: holds more than tensors and plain data"):
        load_checkpoint(path)
    assert not marker.exists()


@pytest.mark.parametrize("content", [b"", b"\x00" * 10, b"random bytes that are no zip file"])
def test_broken_files_are_named(tmp_path, content):
    path = tmp_path / "broken.pt"
    path.write_bytes(content)
    with pytest.raises(ArtifactError, match="broken.pt: not a readable checkpoint"):
        read_checkpoint(path)


def test_truncated_checkpoint_is_named(checkpoint):
    path, _ = checkpoint
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(ArtifactError, match="model.pt: not a readable checkpoint"):
        read_checkpoint(path)


def test_missing_header_wrong_version_and_foreign_weights_are_named(checkpoint):
    path, _ = checkpoint
    payload = torch.load(path, weights_only=True)
    torch.save({"state_dict": payload["state_dict"]}, path)
    with pytest.raises(ArtifactError, match="not a catride checkpoint"):
        read_checkpoint(path)
    torch.save({**payload, "format_version": 99}, path)
    with pytest.raises(ArtifactError, match="format_version 99"):
        read_checkpoint(path)
    torch.save({**payload, "model": {"arch": "c2f2", "embedding_dim": 16}}, path)
    with pytest.raises(ArtifactError, match="weights do not fit the model its header names"):
        load_checkpoint(path)


def test_missing_checkpoint(tmp_path):
    with pytest.raises(ArtifactError, match="nothing.pt: no such checkpoint"):
        read_checkpoint(tmp_path / "nothing.pt")

