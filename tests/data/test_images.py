"""FileImageDataset: lazy RGB loading, the transforms of docs/method.md section 1, and a named error for a bad file;
DecodedImageDataset: the decode cache gives the very same images."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from catride_core.data.images import (
    DecodedImageDataset,
    FileImageDataset,
    decode_images,
    image_transform,
    resize_size,
)
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


# --- the decode cache ---------------------------------------------------------------------------


def assorted_images(folder: Path) -> list[str]:
    """Files that take every branch of to_rgb: photo-like JPEGs of two shapes, grey, RGBA, 16-bit, EXIF-turned."""
    rng = np.random.default_rng(0)
    for k, (width, height) in enumerate([(50, 37), (37, 50), (23, 23)]):
        coarse = Image.fromarray(rng.integers(0, 256, (4, 5, 3), dtype=np.uint8)).resize((width, height))
        coarse.save(folder / f"photo{k}.jpg", quality=90)
    Image.fromarray(rng.integers(0, 256, (30, 41), dtype=np.uint8)).save(folder / "grey.png")
    Image.fromarray(rng.integers(0, 256, (19, 27, 4), dtype=np.uint8), mode="RGBA").save(folder / "alpha.png")
    Image.fromarray(np.linspace(0, 65535, 33 * 20).reshape(20, 33).astype(np.uint16)).save(folder / "deep.png")
    turned = Image.fromarray(rng.integers(0, 256, (10, 31, 3), dtype=np.uint8))
    exif = turned.getexif()
    exif[0x0112] = 6  # "rotate 90 clockwise to display"
    turned.save(folder / "turned.jpg", exif=exif)
    return sorted(path.name for path in folder.iterdir())


@pytest.fixture
def cache(tmp_path):
    """14 px crops of the assorted images (R = 16), their decode cache as one .npy, and their labels."""
    paths = assorted_images(tmp_path)
    decoded = np.concatenate(list(decode_images(tmp_path, paths, image_size=14, num_workers=0, batch_size=3)))
    np.save(tmp_path / "decoded.npy", decoded)
    return tmp_path, paths, np.arange(len(paths)) % 3


def test_decode_cache_holds_the_resized_images(cache):
    folder, paths, _ = cache
    decoded = np.load(folder / "decoded.npy")
    assert decoded.shape == (len(paths), 3, 16, 16) and decoded.dtype == np.uint8
    deep = decoded[paths.index("deep.png")]
    assert deep.min() < 30 and deep.max() > 225  # the 16-bit ramp is scaled, not clipped to white
    assert len({decoded[k].tobytes() for k in range(len(paths))}) == len(paths)


def test_decoded_test_images_equal_the_file_images_exactly(cache):
    # the cache stores PIL's resize output and the centre crop is a slice: no rounding can differ
    folder, paths, labels = cache
    files = FileImageDataset(folder, paths, labels, image_size=14, train=False)
    decoded = DecodedImageDataset(folder / "decoded.npy", np.arange(len(paths)), labels, image_size=14, train=False)
    assert len(decoded) == len(files)
    for k in range(len(files)):
        (cached, cached_label), (read, read_label) = decoded[k], files[k]
        assert cached.dtype == torch.float32 and cached.shape == (3, 14, 14) and cached_label == read_label
        assert torch.equal(cached, read), paths[k]


def test_decoded_train_images_equal_the_file_images_under_the_same_seed(cache):
    # the crop and flip are the same transforms, drawing the same numbers from torch's global RNG
    folder, paths, labels = cache
    files = FileImageDataset(folder, paths, labels, image_size=14, train=True)
    decoded = DecodedImageDataset(folder / "decoded.npy", np.arange(len(paths)), labels, image_size=14, train=True)
    variants = set()
    for k in range(len(files)):
        for seed in range(4):
            torch.manual_seed(seed)
            cached = decoded[k][0]
            torch.manual_seed(seed)
            assert torch.equal(cached, files[k][0]), (paths[k], seed)
            variants.add(cached.numpy().tobytes())
    assert len(variants) > len(files)  # the crops really are random


def test_decoded_train_batches_follow_the_loaders_generator_in_workers(cache):
    folder, paths, labels = cache
    datasets = [
        FileImageDataset(folder, paths, labels, image_size=14, train=True),
        DecodedImageDataset(folder / "decoded.npy", np.arange(len(paths)), labels, image_size=14, train=True),
    ]

    def batches(dataset, seed):
        loader = DataLoader(dataset, batch_size=2, num_workers=2, generator=torch.Generator().manual_seed(seed))
        return torch.cat([images for images, _ in loader])

    file_images, cached_images = (batches(dataset, seed=5) for dataset in datasets)
    assert torch.equal(cached_images, file_images)
    assert not torch.equal(batches(datasets[1], seed=6), cached_images)


def test_decoded_dataset_serves_its_rows_and_pickles_without_pixels(cache):
    folder, paths, labels = cache
    rows = np.array([4, 1])
    decoded = DecodedImageDataset(folder / "decoded.npy", rows, labels[rows], image_size=14, train=False)
    files = FileImageDataset(folder, [paths[r] for r in rows], labels[rows], image_size=14, train=False)
    unopened = len(pickle.dumps(decoded))
    assert torch.equal(decoded[0][0], files[0][0]) and torch.equal(decoded[1][0], files[1][0])
    # once the file is mapped, a worker is still sent only the path, not a copy of the images
    assert len(pickle.dumps(decoded)) == unopened
    assert torch.equal(pickle.loads(pickle.dumps(decoded))[1][0], files[1][0])
    with pytest.raises(ValueError, match="2 rows but 1 labels"):
        DecodedImageDataset(folder / "decoded.npy", rows, labels[:1], image_size=14, train=False)


def test_decoding_in_worker_processes_gives_the_same_cache(cache):
    folder, paths, _ = cache
    batches = list(decode_images(folder, paths, image_size=14, num_workers=2, batch_size=4))
    assert [len(b) for b in batches] == [4, 3]
    np.testing.assert_array_equal(np.concatenate(batches), np.load(folder / "decoded.npy"))


def test_decoding_an_unreadable_image_names_its_path(tmp_path):
    Image.new("RGB", (9, 9)).save(tmp_path / "good.png")
    (tmp_path / "broken.jpg").write_bytes(b"this is not a JPEG")
    with pytest.raises(DataError, match=str(tmp_path / "broken.jpg")):
        list(decode_images(tmp_path, ["good.png", "broken.jpg"], image_size=14, num_workers=0))


def test_build_dataset_reads_the_decode_cache_where_prepare_wrote_one(cache):
    folder, paths, labels = cache
    split = np.where(np.arange(len(paths)) % 2 == 0, "train", "test")
    manifest = pd.DataFrame({"index": range(len(paths)), "label": labels, "split": split, "path": paths})
    meta = {"dataset": "folder", "root": str(folder), "image_size": 14, "channels": 3}
    data = PreparedData(manifest=manifest, meta=meta, decoded=folder / "decoded.npy")
    test = build_dataset(data, "test", train=False)
    assert isinstance(test, DecodedImageDataset) and not test.train and list(test.rows) == [1, 3, 5]
    assert build_dataset(data, "train", train=True).train
    files = build_dataset(PreparedData(manifest=manifest, meta=meta), "test", train=False)
    assert isinstance(files, FileImageDataset)
    assert all(torch.equal(test[k][0], files[k][0]) for k in range(len(test)))


def test_evaluation_reads_image_files_with_workers_and_in_memory_images_without(tmp_path):
    from catride_core.data.images import available_cores
    from catride_core.data.prepared import TensorImageDataset, loader_workers
    from catride_core.models.embedding import image_batches

    paths = [f"ring{i}.png" for i in range(5)]
    for path in paths:
        ringed_png(tmp_path / path, 20)
    files = FileImageDataset(tmp_path, paths, np.arange(5), image_size=14, train=False)
    in_memory = TensorImageDataset(np.zeros((5, 1, 28, 28), np.uint8), np.arange(5))
    assert loader_workers(files, None) == available_cores() and loader_workers(in_memory, None) == 0
    assert loader_workers(files, 3) == 3 and loader_workers(in_memory, 2) == 2  # base.num_workers wins
    # workers (and pinned memory, which a CUDA device asks for) change nothing but the speed
    alone = torch.cat(list(image_batches(files, 2)))
    assert torch.equal(torch.cat(list(image_batches(files, 2, num_workers=2))), alone)
    assert alone.shape == (5, 3, 14, 14)
