import math

import pytest
import torch

from catride_core.attacks.base import AttackBudget, Gallery
from catride_core.attacks.misranking import LearningToMisrank, ReferenceLearningToMisrank
from catride_core.attacks.runner import run_attacks


def test_gtm_run_uses_the_nearest_other_label_target(angle_embedder, toy_data):
    images, labels = toy_data
    result = run_attacks(["gtm"], angle_embedder(), images, labels, AttackBudget(0.0, 0.0, 0), seed=0)["gtm"]
    pixels = images.flatten()
    for i, target in enumerate(result.per_query["targets"][:, 0]):
        other = (labels != labels[i]).nonzero().flatten()
        assert target == other[(pixels[other] - pixels[i]).abs().argmin()].item()


def test_ltm_never_uses_the_query_as_its_own_positive():
    # query at angle 0 (label 0), its only other positive at 120 degrees, a negative at 150:
    # d(q, p) = 2 sin 60 = 1.7321, d(q, n) = 2 sin 75 = 1.9319 -> [1.9319 - 1.7321]_+ = 0.1998.
    # With the query's own clean copy as a positive (distance 0) it would be 1.9319.
    angles = torch.tensor([0.0, 120.0, 150.0]) * math.pi / 180
    embeddings = torch.stack([angles.cos(), angles.sin()], 1)
    gallery = Gallery(embeddings, torch.tensor([0, 0, 1]))
    objective = LearningToMisrank().objective(gallery, torch.tensor([0]), torch.zeros(1, 0, dtype=torch.long))
    expected = 2 * math.sin(math.radians(75)) - 2 * math.sin(math.radians(60))
    assert objective(embeddings[[0]]).item() == pytest.approx(expected, abs=1e-5)


def test_ltm_ref_keeps_the_query_among_its_own_positives_as_the_reference_code_does():
    # the case above: with the query's own clean copy a positive (distance 0) the loss is d(q, n) = 1.9319
    angles = torch.tensor([0.0, 120.0, 150.0]) * math.pi / 180
    embeddings = torch.stack([angles.cos(), angles.sin()], 1)
    gallery = Gallery(embeddings, torch.tensor([0, 0, 1]))
    objective = ReferenceLearningToMisrank().objective(gallery, torch.tensor([0]), torch.zeros(1, 0, dtype=torch.long))
    assert objective(embeddings[[0]]).item() == pytest.approx(2 * math.sin(math.radians(75)), abs=1e-5)


def test_ltm_ref_objective_equals_a_per_query_loop_over_the_whole_label():
    # RobRank's loop: for each query, the farthest other-label item minus the nearest same-label one, self included
    generator = torch.Generator().manual_seed(0)
    embeddings = torch.nn.functional.normalize(torch.randn(30, 4, generator=generator), dim=1)
    labels = torch.randint(0, 3, (30,), generator=generator)
    gallery = Gallery(embeddings, labels)
    queries = torch.tensor([0, 5, 9, 17])
    moved = torch.nn.functional.normalize(embeddings[queries] + 0.3 * torch.randn(4, 4, generator=generator), dim=1)
    expected = 0.0
    for row, query in zip(moved, queries, strict=True):
        distances = (embeddings - row).norm(dim=1)
        same = labels == labels[query]
        expected += (distances[~same].max() - distances[same].min()).clamp_min(0).item()
    objective = ReferenceLearningToMisrank().objective(gallery, queries, torch.zeros(4, 0, dtype=torch.long))
    assert objective(moved).item() == pytest.approx(expected / 4, abs=1e-5)
