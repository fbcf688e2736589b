"""The prepared dataset: what ``prepare`` writes and every later stage reads."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset

from catride_core.data.images import (
    DecodedImageDataset,
    FileImageDataset,
    available_cores,
)
from catride_core.errors import DataError

Split = Literal["train", "test"]


@dataclass(frozen=True)
class PreparedData:
    """A split dataset.

    Attributes:
        manifest: one row per item with columns ``index``, ``label``, ``split``
            (and ``path`` for lazily read image datasets).
        meta: dataset name, root, image size, channels, classes, checksum.
        images: uint8 pixels of every item, for in-memory datasets. Shape: (N, C, H, W)
        decoded: the decode cache of an image-file dataset (``prepare.decode_cache``):
            a ``.npy`` file of every item decoded and resized, read memory-mapped.
            Shape: (N, 3, R, R) uint8
    """

    manifest: pd.DataFrame
    meta: dict[str, Any]
    images: np.ndarray | None = None
    decoded: Path | None = None

    def indices(self, split: Split) -> np.ndarray:
        """Row indices of one side of the split, in manifest order."""
        return self.manifest.index[self.manifest["split"] == split].to_numpy()

    def labels(self, split: Split) -> np.ndarray:
        """Labels of one side of the split, in manifest order."""
        return self.manifest["label"].to_numpy()[self.indices(split)]


class TensorImageDataset(Dataset):
    """Images held in memory as uint8, served as float tensors in [0, 1].

    Shape:
        images: (N, C, H, W) uint8; items: ((C, H, W) float32, int label)
    """

    def __init__(self, images: np.ndarray, labels: np.ndarray) -> None:
        self.images = torch.from_numpy(np.ascontiguousarray(images))
        self.labels = torch.from_numpy(np.asarray(labels, dtype=np.int64))

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self.images[index].float().div_(255.0), int(self.labels[index])


def loader_workers(dataset: Dataset, requested: int | None) -> int:
    """DataLoader workers for reading ``dataset`` outside training (``base.num_workers``).

    ``requested`` where set; else one per available core for images decoded
    from files (a 224 px JPEG takes tens of milliseconds), none for images
    already held in memory (28 px datasets), where workers only add overhead.
    """
    if requested is not None:
        return requested
    return 0 if isinstance(dataset, TensorImageDataset) else available_cores()


def build_dataset(data: PreparedData, split: Split, train: bool) -> Dataset:
    """A torch Dataset of one split; ``train`` selects the training transforms.

    In-memory (28 px) datasets have no transforms. Image-file datasets are read
    from their decode cache where ``prepare`` wrote one, else from the files;
    both give the same images.
    """
    rows = data.indices(split)
    labels = data.manifest["label"].to_numpy()[rows]
    if data.images is not None:
        return TensorImageDataset(data.images[rows], labels)
    if data.decoded is not None:
        return DecodedImageDataset(data.decoded, rows, labels, int(data.meta["image_size"]), train=train)
    if data.meta.get("root") is None or "path" not in data.manifest:
        raise DataError("prepared data of an image-file dataset needs meta 'root' and a manifest 'path' column")
    paths = data.manifest["path"].to_numpy()[rows].tolist()
    return FileImageDataset(data.meta["root"], paths, labels, int(data.meta["image_size"]), train=train)

