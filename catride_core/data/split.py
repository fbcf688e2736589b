"""Seeded train/test splits. Pure functions of the labels and a seed."""

from __future__ import annotations

import numpy as np

from catride_core.errors import DataError


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
        raise DataError("a class-disjoint split needs at least 2 classes")
    n_test = min(max(1, int(round(test_fraction * len(classes)))), len(classes) - 1)
    test_classes = np.random.default_rng(seed).permutation(classes)[:n_test]
    return np.isin(labels, test_classes)


def per_class_subsample(labels: np.ndarray, max_per_class: int, seed: int) -> np.ndarray:
    """Sorted row indices keeping a seeded random ``max_per_class`` items of every class."""
    rng = np.random.default_rng([seed, 7])
    keep = [rng.permutation(np.flatnonzero(labels == c))[:max_per_class] for c in np.unique(labels)]
    return np.sort(np.concatenate(keep))


def split_problem(labels: np.ndarray, is_test: np.ndarray, class_names: list[str] | None = None) -> str | None:
    """Why a split cannot be trained and evaluated on, or None if it can.

    Each side needs items, and every class on a side needs at least two of
    them: an SPC-2 batch pairs each anchor with another item of its class, in
    training and in the test-set collapse diagnostics.
    """
    for side, mask in (("train", ~is_test), ("test", is_test)):
        if not mask.any():
            return f"the split leaves no {side} item"
        classes, counts = np.unique(labels[mask], return_counts=True)
        lonely = [int(c) for c, n in zip(classes, counts) if n < 2]
        if lonely:
            shown = ", ".join(f"{class_names[c]!r} (label {c})" if class_names else f"label {c}" for c in lonely[:5])
            more = f" and {len(lonely) - 5} more" if len(lonely) > 5 else ""
            return f"{side} classes with a single item (SPC-2 pairs need two): {shown}{more}"
    return None
