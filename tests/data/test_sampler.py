import numpy as np
import pytest

from catride_core.data.sampler import SPC2Sampler

LABELS = np.repeat(np.arange(5), 9)  # 45 items, 9 per class


def epoch_batches(sampler, epoch):
    sampler.set_epoch(epoch)
    return list(sampler)


def test_every_item_is_an_anchor_once_and_pairs_share_a_class():
    sampler = SPC2Sampler(LABELS, pairs_per_batch=8, seed=0)
    batches = epoch_batches(sampler, 0)
    assert len(batches) == len(sampler) == 6  # ceil(45 / 8)
    flat = np.concatenate(batches)
    anchors, partners = flat[0::2], flat[1::2]
    assert sorted(anchors) == list(range(45))
    assert (LABELS[anchors] == LABELS[partners]).all()
    assert (anchors != partners).all()
    assert all(len(b) == 16 for b in batches[:-1]) and len(batches[-1]) == 2 * (45 - 40)


def test_seeded_per_epoch():
    sampler = SPC2Sampler(LABELS, 8, seed=0)
    assert epoch_batches(sampler, 1) == epoch_batches(SPC2Sampler(LABELS, 8, seed=0), 1)
    assert epoch_batches(sampler, 1) != epoch_batches(sampler, 2)
    assert epoch_batches(sampler, 1) != epoch_batches(SPC2Sampler(LABELS, 8, seed=1), 1)


def test_partner_is_uniform_over_other_members():
    labels = np.array([0, 0, 0, 1, 1])
    counts = np.zeros((5, 5))
    sampler = SPC2Sampler(labels, 5, seed=0)
    for epoch in range(600):
        (batch,) = epoch_batches(sampler, epoch)
        for a, p in zip(batch[0::2], batch[1::2]):
            counts[a, p] += 1
    # item 0's partner is 1 or 2, each about half of the time
    assert counts[0, 0] == 0 and abs(counts[0, 1] - counts[0, 2]) < 100


def test_single_member_class_is_rejected():
    with pytest.raises(ValueError, match="2 items per class"):
        SPC2Sampler(np.array([0, 0, 1]), 2, 0)
