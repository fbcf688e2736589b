"""Image files read lazily, with the 224 px transforms of docs/method.md section 1.

train: resize to R x R, random crop S, random horizontal flip;
test: resize to R x R, centre crop S; with S = ``image_size`` and
R = round(S * 256 / 224) (256 for the standard 224). No mean/std normalisation
here: that is the first layer inside the model, so pixels stay in [0, 1].

The random crop and flip draw from torch's global RNG; training reads its
items through ``training.SeededItems``, which seeds it per item from the
item's place in the global batch, so the transforms depend on neither the
process nor the DataLoader worker that reads it.

Two datasets serve these images: ``FileImageDataset`` decodes each file every
time it is read; ``DecodedImageDataset`` reads the decode cache, every image
decoded and resized once by ``decode_images`` (``prepare.decode_cache``), and
applies only the crop (and flip). Both give the same images: the cache holds
the resize's output, and the crops are the same transforms drawing the same
random numbers.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps
from torch.utils.data import DataLoader, Dataset
from torchvision.transforms import v2

from catride_core.errors import DataError
from catride_core.runtime import progress_bar


def resize_size(image_size: int) -> int:
    """The side R the image is resized to before an ``image_size`` crop (256 for 224)."""
    return round(image_size * 256 / 224)


def resize_transform(image_size: int) -> v2.Resize:
    """The first step of the transforms: PIL image -> R x R PIL image, R = ``resize_size(image_size)``."""
    return v2.Resize((resize_size(image_size),) * 2, antialias=True)


def crop_transforms(image_size: int, train: bool) -> list[v2.Transform]:
    """What follows the resize: random crop and flip (train) or centre crop (test), on PIL images or tensors."""
    return [v2.RandomCrop(image_size), v2.RandomHorizontalFlip()] if train else [v2.CenterCrop(image_size)]


def image_transform(image_size: int, train: bool) -> v2.Compose:
    """PIL image -> float tensor in [0, 1] of shape (3, image_size, image_size)."""
    return v2.Compose([
        resize_transform(image_size), *crop_transforms(image_size, train),
        v2.PILToTensor(), v2.ToDtype(torch.float32, scale=True),
    ])


def decoded_transform(image_size: int, train: bool) -> v2.Compose:
    """A decode-cache image, uint8 (3, R, R) -> what ``image_transform`` gives: float (3, S, S) in [0, 1]."""
    return v2.Compose([*crop_transforms(image_size, train), v2.ToDtype(torch.float32, scale=True)])


def read_image(path: Path) -> Image.Image:
    """The image file at ``path`` as an upright 8-bit RGB image (``to_rgb``).

    Raises:
        DataError: naming the path, if PIL cannot read it.
    """
    try:
        with Image.open(path) as image:
            return to_rgb(image)
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        raise DataError(f"cannot read image {path}: {exc}") from None


def decode_resized(path: Path, image_size: int) -> np.ndarray:
    """One image as the decode cache stores it: read, resized to R x R, channels first.

    Shape:
        returns (3, R, R) uint8, R = ``resize_size(image_size)``
    """
    resized = resize_transform(image_size)(read_image(path))
    return np.ascontiguousarray(np.asarray(resized, dtype=np.uint8).transpose(2, 0, 1))


class FileImageDataset(Dataset):
    """Images read from disk on demand, converted to RGB and transformed.

    Args:
        root: the dataset root the paths are relative to.
        paths: image files relative to ``root``.
        labels: class per image. Shape: (N,)
        image_size: side S of the square crop.
        train: random crop and flip (True) or centre crop (False).

    Shape:
        items: ((3, S, S) float32 in [0, 1], int label)

    Raises:
        DataError: from ``__getitem__``, naming the path, if PIL cannot read an image.
    """

    def __init__(
        self, root: str | Path, paths: Sequence[str], labels: np.ndarray, image_size: int, train: bool
    ) -> None:
        if len(paths) != len(labels):
            raise ValueError(f"FileImageDataset: {len(paths)} paths but {len(labels)} labels")
        self.root = Path(root)
        self.paths = list(paths)
        self.labels = np.asarray(labels, dtype=np.int64)
        self.image_size = image_size
        self.train = train
        self.transform = image_transform(image_size, train)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self.transform(read_image(self.root / self.paths[index])), int(self.labels[index])


class DecodedImageDataset(Dataset):
    """Images served from the decode cache, memory-mapped: only the crop (and flip) is done per item.

    Gives the same items as ``FileImageDataset`` on the same files (see the module docstring).

    Args:
        path: the cache, a ``.npy`` file of every prepared item. Shape: (N, 3, R, R) uint8
        rows: the rows of the cache this dataset serves, in order. Shape: (M,)
        labels: class per served item. Shape: (M,)
        image_size: side S of the square crop; R = ``resize_size(S)``.
        train: random crop and flip (True) or centre crop (False).

    Shape:
        items: ((3, S, S) float32 in [0, 1], int label)
    """

    def __init__(self, path: str | Path, rows: np.ndarray, labels: np.ndarray, image_size: int, train: bool) -> None:
        if len(rows) != len(labels):
            raise ValueError(f"DecodedImageDataset: {len(rows)} rows but {len(labels)} labels")
        self.path = Path(path)
        self.rows = np.asarray(rows, dtype=np.int64)
        self.labels = np.asarray(labels, dtype=np.int64)
        self.image_size = image_size
        self.train = train
        self.transform = decoded_transform(image_size, train)
        self._pixels: np.ndarray | None = None

    def __getstate__(self) -> dict:
        # a DataLoader worker started by pickling maps the file itself rather than receive a copy of it
        return {**self.__dict__, "_pixels": None}

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        if self._pixels is None:
            self._pixels = np.load(self.path, mmap_mode="r")
        # copied out of the read-only map: torch tensors must be writable
        image = torch.from_numpy(np.array(self._pixels[self.rows[index]]))
        return self.transform(image), int(self.labels[index])


class _ResizedFiles(Dataset):
    """``decode_resized`` of each file: what the decode cache's workers compute."""

    def __init__(self, root: Path, paths: Sequence[str], image_size: int) -> None:
        self.root, self.paths, self.image_size = root, list(paths), image_size

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> torch.Tensor:
        return torch.from_numpy(decode_resized(self.root / self.paths[index], self.image_size))


def available_cores() -> int:
    """The CPU cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def decode_images(
    root: str | Path,
    paths: Sequence[str],
    image_size: int,
    num_workers: int | None = None,
    batch_size: int = 32,
    progress: bool = False,
) -> Iterator[np.ndarray]:
    """Every image decoded and resized once (``decode_resized``), in order, in batches: the decode cache.

    Args:
        root: the dataset root the paths are relative to.
        paths: image files relative to ``root``.
        image_size: side S of the crop the images are for; they are resized to R = ``resize_size(S)``.
        num_workers: DataLoader worker processes that decode (default: one per available core).
        batch_size: images per yielded batch.
        progress: show a progress bar on stderr.

    Shape:
        yields (B, 3, R, R) uint8, B = ``batch_size`` but for the last batch

    Raises:
        DataError: naming the path of the first image PIL cannot read.
    """
    workers = available_cores() if num_workers is None else num_workers
    loader = DataLoader(_ResizedFiles(Path(root), paths, image_size), batch_size=batch_size, num_workers=workers)
    with progress_bar(total=len(paths), enabled=progress, desc="decoding images", unit="image") as bar:
        for batch in loader:
            yield batch.numpy()
            bar.update(len(batch))


#: PIL modes of images with more than 8 bits per channel, and the largest value of each
WIDE_MODES = {"I;16": 65535, "I;16B": 65535, "I;16L": 65535, "I;16N": 65535, "I": 65535, "F": 1.0}


def to_rgb(image: Image.Image) -> Image.Image:
    """An 8-bit RGB copy of ``image``, upright (EXIF orientation applied) and scaled, never clipped.

    PIL's own ``convert("RGB")`` clips 16-bit grey values to 255, so a 16-bit
    PNG would come out white: those are scaled from their full range instead.
    """
    image = ImageOps.exif_transpose(image)
    if image.mode in WIDE_MODES:
        values = np.asarray(image, dtype=np.float64) / WIDE_MODES[image.mode]
        image = Image.fromarray(np.clip(np.rint(values * 255.0), 0, 255).astype(np.uint8), mode="L")
    return image.convert("RGB")
