"""Image files read lazily, with the 224 px transforms of docs/method.md section 1.

train: resize to R x R, random crop S, random horizontal flip;
test: resize to R x R, centre crop S; with S = ``image_size`` and
R = round(S * 256 / 224) (256 for the standard 224). No mean/std normalisation
here: that is the first layer inside the model, so pixels stay in [0, 1].

The random crop and flip draw from torch's global RNG, which a DataLoader
reseeds per worker from its ``generator``: pass a seeded generator for
reproducible augmentation.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps
from torch.utils.data import Dataset
from torchvision.transforms import v2

from catride_core.errors import DataError


def resize_size(image_size: int) -> int:
    """The side R the image is resized to before an ``image_size`` crop (256 for 224)."""
    return round(image_size * 256 / 224)


def image_transform(image_size: int, train: bool) -> v2.Compose:
    """PIL image -> float tensor in [0, 1] of shape (3, image_size, image_size)."""
    resize = v2.Resize((resize_size(image_size),) * 2, antialias=True)
    crop = [v2.RandomCrop(image_size), v2.RandomHorizontalFlip()] if train else [v2.CenterCrop(image_size)]
    return v2.Compose([resize, *crop, v2.PILToTensor(), v2.ToDtype(torch.float32, scale=True)])


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
        path = self.root / self.paths[index]
        try:
            with Image.open(path) as image:
                rgb = to_rgb(image)
        except (OSError, ValueError, Image.DecompressionBombError) as exc:
            raise DataError(f"cannot read image {path}: {exc}") from None
        return self.transform(rgb), int(self.labels[index])


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
