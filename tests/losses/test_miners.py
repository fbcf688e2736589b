import pytest
import torch

from catride_core.distances import pairwise_distances
from catride_core.losses import gradual_margin, mine_triplets


def batch(seed=0, pairs=12, classes=4):
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(classes, (pairs,), generator=g).repeat_interleave(2)
    embeddings = torch.nn.functional.normalize(torch.randn(2 * pairs, 8, generator=g), dim=1)
    return embeddings, labels


@pytest.mark.parametrize("miner", ["random", "semihard", "gradual_semihard"])
def test_triplets_are_valid(miner):
    embeddings, labels = batch()
    a, p, n = mine_triplets(embeddings, labels, miner, 0.2, torch.Generator().manual_seed(1), 0, 4)
    assert (a % 2 == 0).all() and (p == a + 1).all()
    assert (labels[a] == labels[p]).all() and (labels[a] != labels[n]).all()


def test_semihard_picks_semihard_when_it_exists():
    embeddings, labels = batch(seed=3, pairs=30)
    a, p, n = mine_triplets(embeddings, labels, "semihard", 0.5, torch.Generator().manual_seed(0))
    d = pairwise_distances(embeddings, embeddings)
    for i in range(len(a)):
        ai, pi = int(a[i]), int(p[i])
        window = [(d[ai, j] > d[ai, pi]) & (d[ai, j] < d[ai, pi] + 0.5) & (labels[j] != labels[ai]) for j in range(len(labels))]
        if any(window):
            assert window[int(n[i])]


def test_random_is_seeded_and_covers_negatives():
    embeddings, labels = batch()
    first = mine_triplets(embeddings, labels, "random", 0.2, torch.Generator().manual_seed(5))[2]
    again = mine_triplets(embeddings, labels, "random", 0.2, torch.Generator().manual_seed(5))[2]
    other = mine_triplets(embeddings, labels, "random", 0.2, torch.Generator().manual_seed(6))[2]
    assert torch.equal(first, again) and not torch.equal(first, other)


def test_gradual_margin_schedule():
    assert gradual_margin(0.2, 0, 10) == pytest.approx(0.2)
    assert gradual_margin(0.2, 10, 10) == pytest.approx(0.2 * 0.25)  # (1 - 1/2)^2


def test_anchor_without_negative_is_an_error():
    with pytest.raises(ValueError, match="no other-label"):
        mine_triplets(torch.randn(4, 3), torch.zeros(4, dtype=torch.long), "random", 0.2, torch.Generator())
