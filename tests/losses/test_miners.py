import math

import pytest
import torch

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


def on_circle(degrees: list[float]) -> torch.Tensor:
    """Unit 2-d embeddings at the given angles: d = 2 sin(delta / 2), about delta in radians."""
    angles = torch.tensor(degrees, dtype=torch.float64) * math.pi / 180
    return torch.stack([angles.cos(), angles.sin()], 1)


def semihard_window(embeddings, labels, anchor, positive, margin):
    """Slow loop: the batch items j of another label with d_ap < d(a, j) < d_ap + margin."""
    d_ap = float(torch.dist(embeddings[anchor], embeddings[positive]))
    return {
        j
        for j in range(len(labels))
        if labels[j] != labels[anchor] and d_ap < float(torch.dist(embeddings[anchor], embeddings[j])) < d_ap + margin
    }


def test_semihard_picks_from_the_window():
    # 8 classes of one pair on a circle, 10 degrees apart: anchor of class k at 10k, its positive at
    # 10k + 4 (d_ap = 0.070). With margin 0.2 the window (0.070, 0.270) holds the neighbouring
    # classes (6, 10 and 14 degrees away: d = 0.105, 0.174, 0.244) and excludes everything from 16
    # degrees on (d >= 0.278). A distractor pair (label 8) at 1 and 3 degrees lies closer to anchor 0
    # than its positive: hard, not semihard. No distance is within 0.008 of a window's edge, and
    # every window holds 2 to 6 of an anchor's 16 negatives, so a miner that ignored the window
    # would pick outside it within the 5 x 9 choices.
    degrees = [angle for k in range(8) for angle in (10.0 * k, 10.0 * k + 4)] + [1.0, 3.0]
    embeddings = on_circle(degrees).float()
    labels = torch.tensor([*torch.arange(8).repeat_interleave(2).tolist(), 8, 8])
    for seed in range(5):
        a, p, n = mine_triplets(embeddings, labels, "semihard", 0.2, torch.Generator().manual_seed(seed))
        for anchor, positive, negative in zip(a.tolist(), p.tolist(), n.tolist()):
            window = semihard_window(embeddings, labels, anchor, positive, 0.2)
            assert window, f"anchor {anchor} has no semihard window: the test would check nothing"
            assert negative in window, (anchor, negative, sorted(window))
    # the distractor lies within anchor 0's margin, yet outside its window
    assert not {16, 17} & semihard_window(embeddings, labels, 0, 1, 0.2)


def test_random_is_seeded_and_covers_every_other_label_item():
    embeddings, labels = batch()
    first = mine_triplets(embeddings, labels, "random", 0.2, torch.Generator().manual_seed(5))[2]
    again = mine_triplets(embeddings, labels, "random", 0.2, torch.Generator().manual_seed(5))[2]
    assert torch.equal(first, again)
    # over many seeds each anchor's negatives are exactly its other-label items: all of them, and
    # only them (each of <= 22 items missed in 300 uniform draws: p < 22 (21/22)^300 < 1e-4)
    chosen = torch.stack(
        [mine_triplets(embeddings, labels, "random", 0.2, torch.Generator().manual_seed(s))[2] for s in range(300)]
    )
    anchors = torch.arange(0, len(labels), 2)
    for i, anchor in enumerate(anchors.tolist()):
        others = set(torch.nonzero(labels != labels[anchor]).flatten().tolist())
        assert set(chosen[:, i].tolist()) == others, anchor


def test_gradual_margin_schedule():
    assert gradual_margin(0.2, 0, 10) == pytest.approx(0.2)
    assert gradual_margin(0.2, 10, 10) == pytest.approx(0.2 * 0.25)  # (1 - 1/2)^2


def test_anchor_without_negative_is_an_error():
    with pytest.raises(ValueError, match="no other-label"):
        mine_triplets(torch.randn(4, 3), torch.zeros(4, dtype=torch.long), "random", 0.2, torch.Generator())
