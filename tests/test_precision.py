"""Distances, M_lambda, the miner and the losses stay float32 under bf16 autocast (``base.precision: bf16``).

CPU autocast casts matmuls to bfloat16 as CUDA's does, so these tests see the
CUDA semantics that matter here: without the guard in ``distances.py`` a
pairwise distance of bf16 embeddings would be a bf16 matmul, off by about 1e-2
near 0.2, where the semihard window is 0.05-0.2 wide.
"""

import torch
import torch.nn.functional as F

from catride_core.defenses.tride import anp_loss, authors_extra_term, cap_loss
from catride_core.distances import embedding_shift, paired_distances, pairwise_distances
from catride_core.losses import mine_triplets, triplet_loss
from catride_core.retrieval.collapse import collapseness, soft_max_mean


def autocast():
    return torch.autocast("cpu", dtype=torch.bfloat16)


def half_batch(pairs=28, dim=16, classes=7):
    """A bf16 SPC-2 batch, as a model's forward returns it under autocast, with its labels."""
    g = torch.Generator().manual_seed(0)
    labels = torch.randint(classes, (pairs,), generator=g).repeat_interleave(2)
    return F.normalize(torch.randn(2 * pairs, dim, generator=g), dim=1).bfloat16(), labels


def test_the_guard_is_needed_a_bf16_matmul_would_round():
    x, _ = half_batch()
    with autocast():
        assert (x.float() @ x.float().T).dtype == torch.bfloat16  # what autocast does to a bare matmul
        assert pairwise_distances(x, x).dtype == torch.float32


def test_distances_are_float32_and_equal_to_those_of_the_upcast_inputs():
    x, _ = half_batch()
    up = x.float()
    with autocast():
        found = {"pairwise": pairwise_distances(x, x), "paired": paired_distances(x, x.flip(0)),
                 "shift": embedding_shift(x, x.flip(0))}
    expected = {"pairwise": pairwise_distances(up, up), "paired": paired_distances(up, up.flip(0)),
                "shift": embedding_shift(up, up.flip(0))}
    for name, value in found.items():
        assert value.dtype == torch.float32, name
        assert torch.equal(value, expected[name]), name
    # float64 stays float64 (the attacks score in double)
    with autocast():
        assert pairwise_distances(up.double(), up.double()).dtype == torch.float64


def test_m_lambda_collapseness_and_every_loss_are_float32():
    x, _ = half_batch()
    a, p, n = x[0::2], x[1::2], x.flip(0)[0::2]
    with autocast():
        d_ap, d_an = paired_distances(a, p), paired_distances(a, n)
        values = {
            "M_lambda": soft_max_mean(d_ap.bfloat16(), 10.0),
            "collapseness": collapseness(d_ap, d_an, 10.0),
            "triplet": triplet_loss(a, p, n, 0.2),
            "cap": cap_loss(a, p, n, 10.0, collapse_aware=True),
            "cap, tride": cap_loss(a, p, n, 10.0, collapse_aware=False),
            "anp": anp_loss(a, a.flip(0), p, n, 10.0, collapse_aware=True),
            "anp, tride": anp_loss(a, a.flip(0), p, n, 10.0, collapse_aware=False),
            "extra term": authors_extra_term(d_ap, d_an, 1.0, 0.2),
        }
    for name, value in values.items():
        assert value.dtype == torch.float32, name


def test_semihard_mining_under_autocast_picks_what_it_picks_in_float32():
    x, labels = half_batch()
    for miner in ("semihard", "gradual_semihard"):
        with autocast():
            found = mine_triplets(x, labels, miner, 0.2, torch.Generator().manual_seed(3), 1, 4)
        expected = mine_triplets(x.float(), labels, miner, 0.2, torch.Generator().manual_seed(3), 1, 4)
        for part, other in zip(found, expected, strict=True):
            assert torch.equal(part, other), miner
