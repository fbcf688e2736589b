"""``catride prepare`` with ``prepare.decode_cache``: the cache is written, checked and read instead of the files."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import torch
import yaml
from click.testing import CliRunner
from layouts import make_cub

from catride_core.artifacts.prepared import load_prepared
from catride_core.commands.prepare import prepare
from catride_core.data.images import DecodedImageDataset
from catride_core.data.prepared import build_dataset


def run_prepare(tmp_path, prepare_params, *options):
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({"prepare": prepare_params}))
    out = tmp_path / "prepared"
    return CliRunner().invoke(prepare, ["--params", str(params), "--out", str(out), "--no-progress", *options]), out


def test_prepare_writes_a_decode_cache_that_serves_the_file_images(tmp_path):
    root = make_cub(tmp_path / "CUB_200_2011")
    result, out = run_prepare(tmp_path, {"dataset": "cub", "root": str(root), "decode_cache": True}, "--workers", "2")
    assert result.exit_code == 0, result.output
    assert "4 train / 4 test items, decode cache 256 px" in result.output
    data = load_prepared(out)
    assert np.load(data.decoded, mmap_mode="r").shape == (8, 3, 256, 256)
    assert isinstance(build_dataset(data, "train", train=True), DecodedImageDataset)
    cached, cached_labels = stacked_test_split(data)
    files, file_labels = stacked_test_split(replace(data, decoded=None))
    assert cached.shape == (4, 3, 224, 224) and torch.equal(cached, files) and torch.equal(cached_labels, file_labels)


def stacked_test_split(data):
    """Every test image (test transform) and label, stacked."""
    dataset = build_dataset(data, "test", train=False)
    items = [dataset[i] for i in range(len(dataset))]
    return torch.stack([image for image, _ in items]), torch.tensor([label for _, label in items])


def test_an_unreadable_image_stops_the_cache_with_one_line_and_writes_nothing(tmp_path):
    root = make_cub(tmp_path / "CUB_200_2011")
    broken = root / "images" / "002.Bird_2" / "Bird_2_1.jpg"
    broken.write_bytes(b"not a jpeg")
    result, out = run_prepare(tmp_path, {"dataset": "cub", "root": str(root), "decode_cache": True}, "--workers", "1")
    assert result.exit_code == 1
    assert result.output.strip().splitlines()[-1].startswith(f"error: cannot read image {broken}: ")
    assert not out.exists() and list(tmp_path.glob(".prepared.*")) == []


def test_decode_cache_on_the_in_memory_default_is_a_params_error(tmp_path):
    result, out = run_prepare(tmp_path, {"dataset": "mnist5k", "decode_cache": True})
    assert result.exit_code == 2 and not out.exists()
    assert "params.yaml: prepare.decode_cache: the mnist5k dataset is held in memory" in result.output
