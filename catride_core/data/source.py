"""What a dataset source hands to the ``prepare`` stage."""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np


@dataclass(frozen=True)
class SourceData:
    """A whole dataset as read from disk, before any train/test split is chosen.

    Exactly one of ``images`` (small datasets held in memory) and ``paths``
    (image files read lazily at training time) is set.

    Attributes:
        labels: class index per item, 0..num_classes-1. Shape: (N,)
        images: uint8 pixels. Shape: (N, C, H, W)
        paths: image files, relative to the dataset root.
        is_test: the dataset's own split (True = test) where it fixes one; None
            lets ``prepare.split`` decide. Shape: (N,)
        image_size: side length of the images the model sees (28 or 224).
        channels: 1 (grey) or 3 (RGB).
        class_names: a readable name per class index.
        checksum: digest of the files that were read (lazy datasets).
    """

    labels: np.ndarray
    image_size: int
    channels: int
    images: np.ndarray | None = None
    paths: list[str] | None = None
    is_test: np.ndarray | None = None
    class_names: list[str] | None = None
    checksum: str | None = None

    def __post_init__(self) -> None:
        if (self.images is None) == (self.paths is None):
            raise ValueError("SourceData needs exactly one of images and paths")
        n = len(self.labels)
        if self.images is not None and len(self.images) != n:
            raise ValueError("SourceData: images and labels differ in length")
        if self.paths is not None and len(self.paths) != n:
            raise ValueError("SourceData: paths and labels differ in length")
        if self.is_test is not None and len(self.is_test) != n:
            raise ValueError("SourceData: is_test and labels differ in length")

    def subset(self, rows: np.ndarray) -> SourceData:
        """The same dataset restricted to ``rows`` (in that order)."""
        return replace(
            self,
            labels=self.labels[rows],
            images=None if self.images is None else self.images[rows],
            paths=None if self.paths is None else [self.paths[i] for i in rows],
            is_test=None if self.is_test is None else self.is_test[rows],
        )
