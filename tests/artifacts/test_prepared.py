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


# --- the decode cache ---------------------------------------------------------------------------


def lazy_source(n=6, image_size=14):
    return SourceData(labels=np.repeat(np.arange(3), n // 3), image_size=image_size, channels=3,
                      paths=[f"{k}.jpg" for k in range(n)], checksum="0" * 64)


def decoded_batches(n=6, side=16, batch=4):
    pixels = np.arange(n * 3 * side * side, dtype=np.int64).reshape(n, 3, side, side).astype(np.uint8)
    return pixels, [pixels[start:start + batch] for start in range(0, n, batch)]


@pytest.fixture
def cached(tmp_path):
    pixels, batches = decoded_batches()
    is_test = np.array([False, True] * 3)
    data = save_prepared(tmp_path / "prepared", lazy_source(), is_test, "folder", str(tmp_path), iter(batches))
    return tmp_path / "prepared", pixels, data


def test_decode_cache_round_trip(cached):
    folder, pixels, saved = cached
    assert saved.decoded == folder / "decoded.npy"
    data = load_prepared(folder)
    assert data.decoded == folder / "decoded.npy" and data.images is None and data.meta["decoded_size"] == 16
    assert data.meta["files"]["decoded.npy"] == file_digest(folder / "decoded.npy")
    np.testing.assert_array_equal(np.load(data.decoded, mmap_mode="r"), pixels)


def test_without_the_cache_the_prepared_folder_is_as_before(tmp_path):
    save_prepared(tmp_path / "prepared", lazy_source(), np.array([False, True] * 3), "folder", str(tmp_path))
    meta = json.loads((tmp_path / "prepared" / "meta.json").read_text())
    assert "decoded_size" not in meta and sorted(meta["files"]) == ["manifest.csv"]
    assert load_prepared(tmp_path / "prepared").decoded is None


def test_a_changed_missing_or_foreign_decode_cache_is_named(cached):
    folder, pixels, _ = cached
    original = (folder / "decoded.npy").read_bytes()
    (folder / "decoded.npy").write_bytes(original[:-1] + bytes([original[-1] ^ 1]))
    with pytest.raises(ArtifactError, match="decoded.npy: changed since prepare wrote it"):
        load_prepared(folder)
    np.save(folder / "decoded.npy", pixels[:, :, :8, :8])  # a foreign array, its checksum recorded by hand
    meta = json.loads((folder / "meta.json").read_text())
    meta["files"]["decoded.npy"] = file_digest(folder / "decoded.npy")
    (folder / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(ArtifactError, match=r"decoded.npy: holds uint8 \(6, 3, 8, 8\), the manifest and meta.json"):
        load_prepared(folder)
    (folder / "decoded.npy").unlink()
    with pytest.raises(ArtifactError, match="decoded.npy: missing; run the prepare stage"):
        load_prepared(folder)


def test_a_cache_that_cannot_fit_on_the_disk_is_refused_before_decoding(tmp_path, monkeypatch):
    monkeypatch.setattr(
        "catride_core.artifacts.prepared.shutil.disk_usage", lambda path: type("Usage", (), {"free": 1000})()
    )

    def never_decoded():
        raise AssertionError("decoding started")
        yield

    with pytest.raises(ArtifactError, match=r"prepared: the decode cache needs 0.0 GB, .* has 0.0 GB free"):
        save_prepared(tmp_path / "prepared", lazy_source(), np.array([False, True] * 3), "folder", str(tmp_path),
                      never_decoded())
    assert not (tmp_path / "prepared").exists()


@pytest.mark.parametrize("keep", [slice(0, 1), slice(0, 3)])  # too few images, and one batch too many
def test_a_decode_cache_of_the_wrong_size_leaves_nothing(tmp_path, keep):
    _, batches = decoded_batches()
    batches = (batches * 2)[keep]
    with pytest.raises(ValueError, match="decode cache"):
        save_prepared(tmp_path / "prepared", lazy_source(), np.array([False, True] * 3), "folder", str(tmp_path),
                      iter(batches))
    assert list(tmp_path.iterdir()) == []
