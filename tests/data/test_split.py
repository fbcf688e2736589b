import numpy as np
import pytest

from catride_core.data.split import (
    class_disjoint_split,
    per_class_subsample,
    stratified_split,
)

LABELS = np.repeat(np.arange(10), 50)  # sorted by label, like mnist5k


def test_stratified_keeps_every_class_on_both_sides_in_proportion():
    is_test = stratified_split(LABELS, 0.2, seed=3)
    for c in range(10):
        assert is_test[LABELS == c].sum() == 10
    assert is_test.sum() == 100


def test_stratified_is_seeded_and_shuffled():
    a, b, c = (stratified_split(LABELS, 0.2, s) for s in (1, 1, 2))
    assert (a == b).all() and (a != c).any()
    # not just the first items of each class: the source order is sorted by label
    assert not is_test_prefix(a)


def is_test_prefix(is_test):
    return all(is_test[LABELS == c][:10].all() for c in range(10))


def test_class_disjoint_has_no_shared_class():
    is_test = class_disjoint_split(LABELS, 0.3, seed=0)
    train_classes, test_classes = set(LABELS[~is_test]), set(LABELS[is_test])
    assert not train_classes & test_classes
    assert len(test_classes) == 3 and len(train_classes) == 7


def test_class_disjoint_needs_two_classes():
    with pytest.raises(ValueError):
        class_disjoint_split(np.zeros(4, dtype=int), 0.5, 0)


def test_per_class_subsample():
    rows = per_class_subsample(LABELS, 7, seed=0)
    assert (np.bincount(LABELS[rows]) == 7).all()
    assert (np.diff(rows) > 0).all()
