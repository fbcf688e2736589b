"""MNIST and Fashion-MNIST from their official IDX files: 60,000 train + 10,000 test, 28x28 grey.

Both share one file format and layout; the RobRank protocol (docs/method.md
section 1) keeps the official split, with the same 10 classes on both sides.

IDX format (big-endian): two zero bytes, a type byte (0x08 = unsigned byte),
a byte giving the number of dimensions, one uint32 per dimension, then the
values in C order.
"""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path

import numpy as np

from catride_core.data.files import dataset_checksum, fail, index_classes, require_root
from catride_core.data.source import SourceData

FILES = {
    ("train", "images"): "train-images-idx3-ubyte",
    ("train", "labels"): "train-labels-idx1-ubyte",
    ("test", "images"): "t10k-images-idx3-ubyte",
    ("test", "labels"): "t10k-labels-idx1-ubyte",
}

LAYOUT = """\
<root>/                          any folder holding the four official files, each either
  train-images-idx3-ubyte        plain or gzipped (name + ".gz"); the plain file wins if
  train-labels-idx1-ubyte        both are there
  t10k-images-idx3-ubyte
  t10k-labels-idx1-ubyte"""

MNIST_CLASSES = [str(digit) for digit in range(10)]
FASHION_CLASSES = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
]


def _read_file(dataset: str, root: Path, name: str) -> tuple[Path, bytes]:
    """The (decompressed) bytes of ``name`` or ``name.gz``."""
    plain, packed = root / name, root / f"{name}.gz"
    if plain.is_file():
        return plain, plain.read_bytes()
    if packed.is_file():
        try:
            return packed, gzip.decompress(packed.read_bytes())
        except (OSError, EOFError, zlib.error) as exc:
            raise fail(dataset, str(packed), f"not a readable gzip file ({exc})", LAYOUT) from None
    raise fail(dataset, str(plain), f"missing IDX file (neither {name} nor {name}.gz)", LAYOUT)


def parse_idx(dataset: str, path: Path, raw: bytes, ndim: int) -> np.ndarray:
    """The uint8 array stored in an IDX file of ``ndim`` dimensions."""
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise fail(dataset, str(path), "not an IDX file (it does not start with two zero bytes)", LAYOUT)
    if raw[2] != 0x08:
        raise fail(dataset, str(path), f"IDX type byte is 0x{raw[2]:02x}, expected 0x08 (unsigned byte)", LAYOUT)
    if raw[3] != ndim:
        raise fail(dataset, str(path), f"IDX file has {raw[3]} dimensions, expected {ndim}", LAYOUT)
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise fail(dataset, str(path), "IDX header is truncated", LAYOUT)
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    expected = header + int(np.prod(shape))
    if len(raw) != expected:
        raise fail(dataset, str(path), f"holds {len(raw)} bytes, its header {shape} implies {expected}", LAYOUT)
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape)


def _load_idx_dataset(dataset: str, root: str | None, names: list[str]) -> SourceData:
    base = require_root(dataset, root, LAYOUT)
    images, labels, files = [], [], []
    for split in ("train", "test"):
        images_path, images_raw = _read_file(dataset, base, FILES[(split, "images")])
        labels_path, labels_raw = _read_file(dataset, base, FILES[(split, "labels")])
        files += [(FILES[(split, "images")], images_raw), (FILES[(split, "labels")], labels_raw)]
        split_images = parse_idx(dataset, images_path, images_raw, ndim=3)
        split_labels = parse_idx(dataset, labels_path, labels_raw, ndim=1)
        if split_images.shape[1:] != (28, 28):
            raise fail(dataset, str(images_path), f"images are {split_images.shape[1:]}, expected (28, 28)", LAYOUT)
        if len(split_labels) != len(split_images):
            raise fail(
                dataset,
                str(labels_path),
                f"holds {len(split_labels)} labels for {len(split_images)} images in {images_path.name}",
                LAYOUT,
            )
        if len(split_labels) and split_labels.max() >= len(names):
            raise fail(dataset, str(labels_path), f"unknown label {split_labels.max()}; labels are 0..9", LAYOUT)
        images.append(split_images)
        labels.append(split_labels)
    if not len(labels[0]) or not len(labels[1]):
        raise fail(dataset, str(base), "the train or the test files hold no image", LAYOUT)
    indexed, classes = index_classes(np.concatenate(labels))
    return SourceData(
        labels=indexed,
        images=np.concatenate(images)[:, None].copy(),
        is_test=np.arange(len(indexed)) >= len(labels[0]),
        image_size=28,
        channels=1,
        class_names=[names[int(label)] for label in classes],
        checksum=dataset_checksum(files, []),
    )


def load_mnist(root: str | None) -> SourceData:
    """Read MNIST's official IDX files; the official 60k/10k split.

    Returns:
        uint8 images (Shape: (N, 1, 28, 28)), labels, ``is_test``, and the
        checksum of ``files.dataset_checksum`` over the four decompressed files
        (so plain and gzipped copies agree).
    """
    return _load_idx_dataset("mnist", root, MNIST_CLASSES)


def load_fashion(root: str | None) -> SourceData:
    """Read Fashion-MNIST's official IDX files (same layout and format as MNIST)."""
    return _load_idx_dataset("fashion", root, FASHION_CLASSES)
