"""The prepared dataset: what ``prepare`` writes and every later stage reads."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader, Dataset

from catride_core.data.images import DecodedImageDataset, FileImageDataset
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

    def tensors(self) -> tuple[torch.Tensor, torch.Tensor]:
        """All images as float [0, 1] and all labels, at once (small datasets only)."""
        return self.images.float().div_(255.0), self.labels


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


def stack_split(data: PreparedData, split: Split, batch_size: int = 64, num_workers: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """One split as a single tensor of test-transformed images, and its labels.

    Attacks take the whole test split at once; at 224 px this holds N x 3 x 224 x 224 floats.

    Shape:
        returns (N, C, H, W) float in [0, 1] and (N,) int64
    """
    dataset = build_dataset(data, split, train=False)
    if isinstance(dataset, TensorImageDataset):
        return dataset.tensors()
    batches = list(DataLoader(dataset, batch_size=batch_size, num_workers=num_workers))
    return torch.cat([images for images, _ in batches]), torch.cat([labels for _, labels in batches])
