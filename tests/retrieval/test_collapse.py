"""M_lambda, collapseness, the embedding spread and the collapse diagnostics on test embeddings."""

import math

import pytest
import torch
import torch.nn.functional as F

from catride_core.retrieval.collapse import (
    DIAGNOSTIC_MARGIN,
    DIAGNOSTIC_PAIRS_PER_BATCH,
    collapse_diagnostics,
    collapseness,
    embedding_spread,
    soft_max_mean,
)


def test_soft_max_mean_limits():
    d = torch.tensor([0.1, 0.5, 1.3, 0.7])
    assert torch.isclose(soft_max_mean(d, 1e-6), d.mean(), atol=1e-5)
    assert torch.isclose(soft_max_mean(d, 200.0), d.max(), atol=1e-4)


def test_soft_max_mean_hand_worked():
    # lambda = ln 3, D = [0, 1]: w = [e^{-ln3}, 1] = [1/3, 1] -> (0 + 1) / (4/3) = 0.75
    assert torch.isclose(soft_max_mean(torch.tensor([0.0, 1.0]), math.log(3.0)), torch.tensor(0.75))


def test_collapseness_sign_and_gradient():
    d_ap = torch.tensor([0.2, 0.3], requires_grad=True)
    d_an = torch.tensor([0.9, 1.0])
    c = collapseness(d_ap, d_an, 10.0)
    assert c < 0  # negatives far beyond positives: not collapsed
    c.backward()
    assert (d_ap.grad > 0).all()


def test_embedding_spread_uses_distinct_pairs():
    # three points 120 degrees apart: every distinct pair is sqrt(3) apart; drawing a point
    # with itself would pull the mean towards 0
    angles = torch.tensor([0.0, 2 * math.pi / 3, 4 * math.pi / 3])
    embeddings = torch.stack([angles.cos(), angles.sin()], 1)
    assert embedding_spread(embeddings, 0, pairs=500) == pytest.approx(math.sqrt(3), abs=1e-5)


def test_embedding_spread_is_seeded():
    embeddings = F.normalize(torch.randn(50, 4, generator=torch.Generator().manual_seed(0)), dim=1)
    first = embedding_spread(embeddings, torch.Generator().manual_seed(3), pairs=200)
    assert first == embedding_spread(embeddings, 3, pairs=200)
    assert first != embedding_spread(embeddings, 4, pairs=200)
    # close to the exact mean over all distinct pairs
    distances = torch.cdist(embeddings, embeddings)
    exact = distances.sum() / (50 * 49)
    assert first == pytest.approx(float(exact), abs=0.1)


def test_the_diagnostic_defaults_are_the_reference_training_settings():
    # the reference fine-tuning batch (128 pairs) and the triplet margin (0.2, docs/method.md section 3)
    assert (DIAGNOSTIC_PAIRS_PER_BATCH, DIAGNOSTIC_MARGIN) == (128, 0.2)
    g = torch.Generator().manual_seed(0)
    labels = torch.arange(40).repeat(8)
    embeddings = F.normalize(torch.randn(320, 8, generator=g), dim=1)
    explicit = collapse_diagnostics(embeddings, labels, 10.0, seed=0, pairs_per_batch=128, margin=0.2)
    assert collapse_diagnostics(embeddings, labels, 10.0, seed=0) == explicit
    assert collapse_diagnostics(embeddings, labels, 10.0, seed=0, pairs_per_batch=64) != explicit


def test_two_point_classes_hand_worked():
    # every class-0 item at e1, every class-1 item at e2: d_ap = 0 and every negative lies at
    # sqrt(2), whatever the miner picks -> C = 0 - sqrt(2) in every batch
    labels = torch.tensor([0, 1] * 20)
    embeddings = torch.eye(2)[labels]
    result = collapse_diagnostics(embeddings, labels, 10.0, seed=0, pairs_per_batch=8)
    assert result["collapseness"] == pytest.approx(-math.sqrt(2), abs=1e-6)
    # random distinct pairs are same-class (0) or not (sqrt 2) about half the time each
    assert 0.5 < result["spread"] < 0.9


def test_a_collapsed_embedding_has_positive_collapseness():
    # class 0 split between u and -u (far positives), class 1 at v between them (near negatives)
    labels = torch.tensor([0, 0, 1] * 20)
    embeddings = torch.tensor([[1.0, 0.0], [-1.0, 0.0], [0.0, 1.0]]).repeat(20, 1)
    result = collapse_diagnostics(embeddings, labels, 10.0, seed=0, pairs_per_batch=64)
    assert result["collapseness"] > 0


def test_pure_and_seeded():
    g = torch.Generator().manual_seed(0)
    labels = torch.arange(5).repeat(12)
    embeddings = F.normalize(torch.randn(60, 8, generator=g), dim=1)
    first = collapse_diagnostics(embeddings, labels, 2.0, seed=3, pairs_per_batch=8)
    assert first == collapse_diagnostics(embeddings.clone(), labels.clone(), 2.0, seed=3, pairs_per_batch=8)
    assert first != collapse_diagnostics(embeddings, labels, 2.0, seed=4, pairs_per_batch=8)


def test_fails_when_no_batch_holds_two_classes():
    labels = torch.zeros(10, dtype=torch.long)
    embeddings = F.normalize(torch.randn(10, 4, generator=torch.Generator().manual_seed(0)), dim=1)
    with pytest.raises(ValueError, match="two classes"):
        collapse_diagnostics(embeddings, labels, 10.0, seed=0)


def test_negatives_are_mined_semihard():
    # classes 0 and 1 sit at u and v with d(u, v) = 0.1, class 2 at -u; every positive coincides
    # with its anchor (d_ap = 0). Semihard (window (0, 0.2)) gives classes 0 and 1 the negative at
    # 0.1; class 2 has none and falls back to one at ~2 (2 or sqrt(4 - 0.01)). One batch holds every
    # item once as anchor, a third per class; lambda -> 0 makes M the mean:
    # C = 0 - (2/3 * 0.1 + 1/3 * ~2) = -0.7333 (+- 0.001). A random miner would give about -1.05.
    angle = 2 * math.asin(0.05)
    points = torch.tensor([[1.0, 0.0], [math.cos(angle), math.sin(angle)], [-1.0, 0.0]])
    labels = torch.arange(3).repeat(10)
    result = collapse_diagnostics(points[labels], labels, 1e-9, seed=0, pairs_per_batch=64)
    assert result["collapseness"] == pytest.approx(-(2 / 3 * 0.1 + 2 / 3), abs=1e-3)
