"""HM's gradual destination hardness and its inner objective."""

import pytest
import torch

from catride_core.defenses.hm import (
    INITIAL_PREV_LOSS,
    destination_hardness,
    hardness_gap,
)


@pytest.mark.parametrize(
    "prev_loss, expected",
    [
        (INITIAL_PREV_LOSS, -0.2),  # first step: clamp(2.0, 0, 0.2) / 0.2 = 1 -> -0.2 (the semihard boundary)
        (0.1, -0.1),  # halfway
        (0.0, 0.0),  # a model with zero adversarial loss gets the hardest destination
        (-0.3, 0.0),  # clamped below at 0
    ],
)
def test_destination_hardness(prev_loss, expected):
    assert destination_hardness(prev_loss, 0.2) == pytest.approx(expected, abs=1e-12)


def test_hardness_gap_only_pushes_triplets_easier_than_the_destination():
    # 1-d embeddings on a line (the objective only needs distances): a = 0, p = 0.1,
    # n = 0.5 -> H = 0.1 - 0.5 = -0.4; n = 0.15 -> H = -0.05
    a = torch.zeros(2, 1)
    p = torch.full((2, 1), 0.1)
    n = torch.tensor([[0.5], [0.15]])
    # destination -0.2: triplet 0 is 0.2 too easy, triplet 1 already harder -> mean(0.04, 0) = 0.02
    assert float(hardness_gap(a, p, n, -0.2)) == pytest.approx(0.02)
    assert float(hardness_gap(a, p, n, -0.5)) == 0.0
    # minimising it makes the easy triplet harder: the gradient pulls its negative towards the anchor
    n = n.clone().requires_grad_(True)
    hardness_gap(a, p, n, -0.2).backward()
    assert float(n.grad[0]) > 0 and float(n.grad[1]) == 0.0
