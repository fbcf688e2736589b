"""The prepared dataset round-trips, and a missing file or another format version is named."""

import json

import numpy as np
import pytest

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


def test_missing_files_and_another_version_are_named(prepared):
    folder, _ = prepared
    meta = json.loads((folder / "meta.json").read_text())
    (folder / "meta.json").write_text(json.dumps({**meta, "format_version": 0}))
    with pytest.raises(ArtifactError, match="meta.json: format_version 0"):
        load_prepared(folder)
    (folder / "manifest.csv").unlink()
    with pytest.raises(ArtifactError, match="manifest.csv: missing; run the prepare stage first"):
        load_prepared(folder)
