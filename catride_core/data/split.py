"""Seeded train/test splits. Pure functions of the labels and a seed."""

from __future__ import annotations

import numpy as np


def stratified_split(labels: np.ndarray, test_fraction: float, seed: int) -> np.ndarray:
    """Same classes on both sides; each class keeps ``test_fraction`` of its items for test.

    Items are shuffled with the seed first, so the order of the source (mnist5k
    is sorted by label) does not matter.

    Returns:
        is_test mask. Shape: (N,) bool
    """
    rng = np.random.default_rng(seed)
    is_test = np.zeros(len(labels), dtype=bool)
    for label in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == label))
        n_test = int(round(test_fraction * len(members)))
        is_test[members[:n_test]] = True
    return is_test


def class_disjoint_split(labels: np.ndarray, test_fraction: float, seed: int) -> np.ndarray:
    """No class on both sides ("zero-shot" protocol): a seeded ``test_fraction`` of classes is test.

    Returns:
        is_test mask. Shape: (N,) bool
    """
    classes = np.unique(labels)
    if len(classes) < 2:
        raise ValueError("a class-disjoint split needs at least 2 classes")
    n_test = min(max(1, int(round(test_fraction * len(classes)))), len(classes) - 1)
    test_classes = np.random.default_rng(seed).permutation(classes)[:n_test]
    return np.isin(labels, test_classes)


def per_class_subsample(labels: np.ndarray, max_per_class: int, seed: int) -> np.ndarray:
    """Sorted row indices keeping a seeded random ``max_per_class`` items of every class."""
    rng = np.random.default_rng([seed, 7])
    keep = [rng.permutation(np.flatnonzero(labels == c))[:max_per_class] for c in np.unique(labels)]
    return np.sort(np.concatenate(keep))
