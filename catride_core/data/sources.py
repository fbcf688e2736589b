"""Dataset sources: one reader per ``prepare.dataset`` name, and how the ``prepare`` stage splits them."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from catride_core import names
from catride_core.data.cars import load_cars
from catride_core.data.cub import load_cub
from catride_core.data.folder import load_folder
from catride_core.data.idx import load_fashion, load_mnist
from catride_core.data.mnist5k import load_mnist5k
from catride_core.data.sop import load_sop
from catride_core.data.source import SourceData
from catride_core.data.split import (
    class_disjoint_split,
    per_class_subsample,
    stratified_split,
)
from catride_core.errors import DataError

#: ``prepare.dataset`` name -> the function that reads that dataset from its root
SOURCES: dict[str, Callable[[str | None], SourceData]] = {
    "mnist5k": load_mnist5k,
    "mnist": load_mnist,
    "fashion": load_fashion,
    "cub": load_cub,
    "cars": load_cars,
    "sop": load_sop,
    "folder": load_folder,
}
if tuple(SOURCES) != names.DATASETS:
    raise ImportError(f"dataset sources {tuple(SOURCES)} do not match names.DATASETS {names.DATASETS}")


def read_source(name: str, root: str | None) -> SourceData:
    """Read dataset ``name`` from ``root`` with its registered source."""
    if name not in SOURCES:
        raise DataError(f"dataset {name!r} has no source yet; available: {sorted(SOURCES)}")
    return SOURCES[name](root)


def limit_per_class(source: SourceData, max_per_class: int | None, seed: int) -> SourceData:
    """Keep at most ``max_per_class`` items of each class (seeded); ``None`` keeps all."""
    if max_per_class is None:
        return source
    return source.subset(per_class_subsample(source.labels, max_per_class, seed))


def choose_split(source: SourceData, split: str, test_fraction: float, seed: int) -> np.ndarray:
    """The is_test mask: the dataset's own split if it fixes one, else the configured one."""
    if source.is_test is not None:
        return np.asarray(source.is_test, dtype=bool)
    if split == "class_disjoint":
        return class_disjoint_split(source.labels, test_fraction, seed)
    return stratified_split(source.labels, test_fraction, seed)

