"""FileImageDataset: lazy RGB loading, the transforms of docs/method.md section 1, and a named error for a bad file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from catride_core.data.images import FileImageDataset, image_transform, resize_size
from catride_core.data.prepared import PreparedData, build_dataset
from catride_core.errors import DataError


def ringed_png(path: Path, side: int) -> np.ndarray:
    """A side x side RGB image: a white 1-pixel ring around a left-to-right ramp; returns its pixels."""
    pixels = np.zeros((side, side, 3), dtype=np.uint8)
    pixels[:, :, 0] = np.linspace(0, 200, side, dtype=np.uint8)[None, :]
    pixels[:, :, 2] = 50
    pixels[[0, -1], :] = 255
    pixels[:, [0, -1]] = 255
    Image.fromarray(pixels).save(path)
    return pixels


def test_resize_side_is_256_for_224():
    assert resize_size(224) == 256 and resize_size(14) == 16


def test_test_transform_is_a_centre_crop(tmp_path):
    # a 16 x 16 image is already at the resize side for a 14 px crop: the centre
    # crop removes exactly the 1-pixel white ring and keeps the ramp unflipped
    pixels = ringed_png(tmp_path / "ring.png", side=16)
    dataset = FileImageDataset(tmp_path, ["ring.png"], np.array([3]), image_size=14, train=False)
    image, label = dataset[0]
    assert label == 3 and image.shape == (3, 14, 14) and image.dtype == torch.float32
    expected = torch.from_numpy(pixels[1:-1, 1:-1]).permute(2, 0, 1).float() / 255
    torch.testing.assert_close(image, expected)


def test_train_transform_is_a_random_crop_and_flip(tmp_path):
    pixels = torch.from_numpy(ringed_png(tmp_path / "ring.png", side=16)).permute(2, 0, 1).float() / 255
    windows = [
        view[:, top : top + 14, left : left + 14]
        for view in (pixels, pixels.flip(-1))
        for top in range(3)
        for left in range(3)
    ]
    dataset = FileImageDataset(tmp_path, ["ring.png"], np.array([0]), image_size=14, train=True)
    torch.manual_seed(0)
    seen = set()
    for _ in range(12):
        image, _ = dataset[0]
        matches = [k for k, window in enumerate(windows) if torch.allclose(image, window)]
        assert len(matches) == 1
        seen.add(matches[0])
    assert any(k < 9 for k in seen) and any(k >= 9 for k in seen)  # both flipped and unflipped crops
    assert len(seen) > 2


def test_grey_and_jpeg_images_come_out_rgb_in_unit_range_at_224(tmp_path):
    Image.new("L", (40, 30), 128).save(tmp_path / "grey.jpg")
    dataset = FileImageDataset(tmp_path, ["grey.jpg"], np.array([1]), image_size=224, train=True)
    image, label = dataset[0]
    assert image.shape == (3, 224, 224) and label == 1
    assert 0.0 <= image.min() and image.max() <= 1.0
    torch.testing.assert_close(image, torch.full_like(image, 128 / 255), atol=2 / 255, rtol=0)


def test_unreadable_image_names_its_path(tmp_path):
    (tmp_path / "broken.jpg").write_bytes(b"this is not a JPEG")
    dataset = FileImageDataset(tmp_path, ["broken.jpg"], np.array([0]), image_size=14, train=False)
    with pytest.raises(DataError, match=str(tmp_path / "broken.jpg")):
        dataset[0]
    missing = FileImageDataset(tmp_path, ["gone.jpg"], np.array([0]), image_size=14, train=False)
    with pytest.raises(DataError, match=str(tmp_path / "gone.jpg")):
        missing[0]


def test_build_dataset_serves_lazy_splits_from_prepared_data(tmp_path):
    paths = []
    for k in range(4):
        Image.new("RGB", (20, 18), (60 * k, 10, 10)).save(tmp_path / f"{k}.png")
        paths.append(f"{k}.png")
    manifest = pd.DataFrame(
        {"index": range(4), "label": [0, 0, 1, 1], "split": ["train", "test", "train", "test"], "path": paths}
    )
    meta = {"dataset": "folder", "root": str(tmp_path), "image_size": 14, "channels": 3}
    data = PreparedData(manifest=manifest, meta=meta)
    test = build_dataset(data, "test", train=False)
    assert isinstance(test, FileImageDataset) and len(test) == 2 and not test.train
    image, label = test[1]
    assert image.shape == (3, 14, 14) and label == 1
    torch.testing.assert_close(image[0], torch.full((14, 14), 180 / 255))  # row 3: red 60 * 3
    assert build_dataset(data, "train", train=True).train


def test_image_transform_output_is_a_plain_tensor():
    image = image_transform(14, train=True)(Image.new("RGB", (9, 30), (1, 2, 3)))
    assert type(image) is torch.Tensor and image.shape == (3, 14, 14)
