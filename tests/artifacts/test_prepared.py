"""The prepared dataset round-trips, and a missing file or another format version is named."""

import json

import numpy as np
import pytest

from catride_core.artifacts.files import file_digest
from catride_core.artifacts.prepared import load_prepared, save_prepared
from catride_core.data.source import SourceData
from catride_core.errors import ArtifactError


@pytest.fixture
def prepared(tmp_path):
    labels = np.repeat(np.arange(3), 4)
    images = np.arange(12 * 4, dtype=np.uint8).reshape(12, 1, 2, 2)
    source = SourceData(labels=labels, image_size=2, channels=1, images=images)
    is_test = np.tile([False, False, False, True], 3)
    save_prepared(tmp_path / "prepared", source, is_test, "mnist5k", None)
    return tmp_path / "prepared", images


def test_round_trip(prepared):
    folder, images = prepared
    data = load_prepared(folder)
    np.testing.assert_array_equal(data.images, images)
    assert data.meta["n_train"] == 9 and data.meta["n_test"] == 3 and data.meta["num_classes_test"] == 3
    assert list(data.labels("test")) == [0, 1, 2] and list(data.indices("test")) == [3, 7, 11]


def test_another_version_is_named(prepared):
    folder, _ = prepared
    meta = json.loads((folder / "meta.json").read_text())
    (folder / "meta.json").write_text(json.dumps({**meta, "format_version": 0}))
    with pytest.raises(ArtifactError, match="meta.json: format_version 0"):
        load_prepared(folder)


@pytest.mark.parametrize("name", ["manifest.csv", "images.npy", "meta.json"])
def test_a_missing_file_is_named(prepared, name):
    folder, _ = prepared
    (folder / name).unlink()
    with pytest.raises(ArtifactError, match=f"{name}: missing; run the prepare stage"):
        load_prepared(folder)


def test_a_changed_truncated_or_foreign_file_is_named(prepared):
    folder, images = prepared
    original = (folder / "images.npy").read_bytes()
    (folder / "images.npy").write_bytes(original[:-5])
    with pytest.raises(ArtifactError, match="images.npy: changed since prepare wrote it"):
        load_prepared(folder)
    np.save(folder / "images.npy", images[:5])  # a foreign array, its checksum recorded by hand
    meta = json.loads((folder / "meta.json").read_text())
    meta["files"]["images.npy"] = file_digest(folder / "images.npy")
    (folder / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(ArtifactError, match=r"images.npy: holds uint8 \(5, 1, 2, 2\), the manifest"):
        load_prepared(folder)


def test_a_manifest_without_its_columns_is_named(prepared):
    folder, _ = prepared
    (folder / "manifest.csv").write_text("index,label\n0,0\n")
    meta = json.loads((folder / "meta.json").read_text())
    meta["files"]["manifest.csv"] = file_digest(folder / "manifest.csv")
    (folder / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(ArtifactError, match=r"manifest.csv: lacks the columns \['split'\]"):
        load_prepared(folder)
