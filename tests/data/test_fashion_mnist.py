"""The real Fashion-MNIST, as Debian's ``dataset-fashion-mnist`` installs it, through the real ``catride prepare``.

Skipped, saying how to get it, where the package is absent. About 5 s: the
four files are read, decompressed and checksummed once, and 47 MB of images
written and read back.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
import yaml
from click.testing import CliRunner

from catride_core.artifacts.prepared import load_prepared
from catride_core.commands.prepare import prepare

ROOT = Path("/usr/share/datasets/fashion-mnist")

# sha256sum of the files as Debian's dataset-fashion-mnist 0.0~git20200523.55506a9-1 installs them in ROOT.
# Debian recompressed them: the MD5s of the .gz files in Zalando's README do not match these files, their
# decompressed IDX contents are what the checksum below pins.
SHIPPED_SHA256 = {
    "train-images-idx3-ubyte.gz": "b0564c3eedabfbf835052cff8503ea422014ce006caf5b757f851416ee8300c7",
    "train-labels-idx1-ubyte.gz": "0ae29f65d86684f32d1b9c85147786c547b9c6aebcaf235f0400a0cce308b056",
    "t10k-images-idx3-ubyte.gz": "cc1d090a38ace84dfa1aa66e3ada7c336ef481a96936906477e6dd344da56eaa",
    "t10k-labels-idx1-ubyte.gz": "8d3605d196f4be44669e46906da9733c8131fef761fdbfec72c424d5222f1a05",
}
# The dataset checksum prepare records in meta.json (files.dataset_checksum over the four decompressed IDX files,
# so plain and gzipped copies agree), and the SHA-256 of the prepared images.npy (the 70,000 images in the
# official order, uint8, 1 x 28 x 28): both read from meta.json after `catride prepare` of those files
# (2026-12-05). A change means the reader or the prepared format changed what it makes of the same files.
DATASET_CHECKSUM = "74e875f6f5a65daeae9fe79429095d49d3b94a12058e30d5b8a7931d52f0680d"
IMAGES_NPY_SHA256 = "efb043c8cd2e48cc99025073f01cb6986ae39d34af8d7deaa465e657f0755cf6"
# Zalando's README, "Labels": the names of labels 0..9
CLASS_NAMES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
               "Ankle boot"]


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    if not all((ROOT / name).is_file() for name in SHIPPED_SHA256):
        pytest.skip(f"the real Fashion-MNIST is not in {ROOT}: apt-get install dataset-fashion-mnist")
    folder = tmp_path_factory.mktemp("fashion")
    params = folder / "params.yaml"
    params.write_text(yaml.safe_dump({"prepare": {"dataset": "fashion", "root": str(ROOT)}}))
    out = folder / "prepared"
    result = CliRunner().invoke(prepare, ["--params", str(params), "--out", str(out), "--no-progress"])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("prepared fashion: 60000 train / 10000 test items")
    return load_prepared(out)


def test_the_files_are_the_ones_the_checksums_were_taken_from():
    if not ROOT.is_dir():
        pytest.skip(f"the real Fashion-MNIST is not in {ROOT}: apt-get install dataset-fashion-mnist")
    found = {name: hashlib.sha256((ROOT / name).read_bytes()).hexdigest() for name in SHIPPED_SHA256}
    assert found == SHIPPED_SHA256


def test_prepared_fashion_is_the_official_split(prepared):
    meta, manifest = prepared.meta, prepared.manifest
    assert (meta["dataset"], meta["n_train"], meta["n_test"]) == ("fashion", 60_000, 10_000)
    assert (meta["image_size"], meta["channels"], meta["num_classes"]) == (28, 1, 10)
    assert meta["class_names"] == CLASS_NAMES
    assert meta["num_classes_train"] == meta["num_classes_test"] == 10
    # the official order: the 60,000 training images first, then the 10,000 test images
    assert (manifest["split"].iloc[:60_000] == "train").all() and (manifest["split"].iloc[60_000:] == "test").all()
    train = manifest["label"][manifest["split"] == "train"].to_numpy()
    test = manifest["label"][manifest["split"] == "test"].to_numpy()
    assert np.bincount(train, minlength=10).tolist() == [6_000] * 10
    assert np.bincount(test, minlength=10).tolist() == [1_000] * 10
    assert prepared.images.shape == (70_000, 1, 28, 28) and prepared.images.dtype == np.uint8


def test_prepared_fashion_matches_its_checksums(prepared):
    assert prepared.meta["checksum"] == DATASET_CHECKSUM
    assert prepared.meta["files"]["images.npy"] == IMAGES_NPY_SHA256
