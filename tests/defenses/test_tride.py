"""CAP/ANP objectives of TRIDE and CA-TRIDE against hand-worked examples."""

import math

import pytest
import torch
import torch.nn.functional as F

from catride_core.defenses.tride import (
    anp_loss,
    authors_extra_term,
    cap_loss,
    decoupling_phase,
)

TINY = 1e-9  # lambda -> 0: M_lambda is the mean
# embedding_shift adds 1e-6 inside the norm: a zero shift reads as about 1.4e-6 in 2-d
SHIFT_TOL = 1e-5


def unit(*rows):
    return F.normalize(torch.tensor(rows, dtype=torch.float64), dim=1)


def test_phases_alternate_from_cap_on_step_zero():
    assert [decoupling_phase(s) for s in range(6)] == ["cap", "anp"] * 3
    assert decoupling_phase(10_001) == "anp"


def test_cap_is_bounded_at_the_collapse_boundary():
    anchors = unit([1, 0], [0, 1])
    # not collapsed: d_ap = [0, 0], d_an = [2, 2] -> [M(D_an) - M(D_ap)]_+ = 2
    assert float(cap_loss(anchors, anchors, -anchors, 10.0, True)) == pytest.approx(2.0)
    # collapsed (positives opposite, negatives on the anchors): bound reached, loss and gradient 0
    positives = (-anchors).requires_grad_(True)
    loss = cap_loss(anchors, positives, anchors, 10.0, True)
    loss.backward()
    assert float(loss.detach()) == 0.0 and float(positives.grad.abs().sum()) == 0.0
    # TRIDE has no bound: mean(D_an) - mean(D_ap) = 0 - 2
    assert float(cap_loss(anchors, -anchors, anchors, 10.0, False)) == pytest.approx(-2.0)


def test_cap_of_tride_is_ca_tride_without_bound_as_lambda_goes_to_zero():
    # a batch far from collapse, so that the bound [.]_+ is inactive: with lambda -> 0, M is the
    # mean and the two objectives, and their gradients, coincide
    g = torch.Generator().manual_seed(0)
    anchors = F.normalize(torch.randn(5, 4, generator=g, dtype=torch.float64), dim=1)
    positives = F.normalize(anchors + 0.1 * torch.randn(5, 4, generator=g, dtype=torch.float64), dim=1)
    negatives = F.normalize(-anchors + 0.3 * torch.randn(5, 4, generator=g, dtype=torch.float64), dim=1)
    grads = []
    for aware in (True, False):
        p, n = positives.clone().requires_grad_(True), negatives.clone().requires_grad_(True)
        loss = cap_loss(anchors, p, n, TINY, aware)
        loss.backward()
        grads.append((float(loss.detach()), p.grad, n.grad))
    (loss_ca, gp_ca, gn_ca), (loss_tr, gp_tr, gn_tr) = grads
    assert loss_ca == pytest.approx(loss_tr) and loss_ca > 0
    assert torch.allclose(gp_ca, gp_tr) and torch.allclose(gn_ca, gn_tr)
    # with a real lambda the soft maximum weights the far distances more: the gradients differ
    p = positives.clone().requires_grad_(True)
    cap_loss(anchors, p, negatives, 10.0, True).backward()
    assert not torch.allclose(p.grad, gp_tr)


def test_anp_brake_is_zero_while_not_collapsed():
    # positives on the anchors (d_ap = 0), negatives opposite (d_an = 2), anchors unmoved (s_aa ~ 0):
    # brake [M(D_ap) - M(D_an)]_+ = 0; gamma = exp(-2); D_near = 2 -> loss = 2 exp(-2)
    anchors = unit([1, 0], [0, 1])
    loss = anp_loss(anchors, anchors, anchors, -anchors, 10.0, True)
    assert float(loss) == pytest.approx(2 * math.exp(-2), abs=SHIFT_TOL)


def test_anp_brake_acts_once_collapsed():
    # positives opposite (d_ap = 2), negatives on the anchors (d_an = 0): brake = 2, gamma = 1,
    # D_near = 0 so the shift term [0 - s_aa]_+ = 0 -> loss = 2
    anchors = unit([1, 0], [0, 1])
    assert float(anp_loss(anchors, anchors, -anchors, anchors, 10.0, True)) == pytest.approx(2.0)


def test_anp_gamma_is_a_constant_and_d_near_is_the_nearer_half():
    # B = 4 clean anchors; the perturbed anchors moved a little. Not collapsed, so
    # loss = gamma * (D_near - s_aa) with gamma = exp(-(M(D_an) - M(D_ap))) and no gradient through gamma.
    g = torch.Generator().manual_seed(1)
    clean = F.normalize(torch.randn(4, 3, generator=g, dtype=torch.float64), dim=1)
    moved = F.normalize(clean + 0.05 * torch.randn(4, 3, generator=g, dtype=torch.float64), dim=1)
    positives = F.normalize(clean + 0.05 * torch.randn(4, 3, generator=g, dtype=torch.float64), dim=1)
    negatives = F.normalize(-clean + 0.5 * torch.randn(4, 3, generator=g, dtype=torch.float64), dim=1)
    anchors = moved.clone().requires_grad_(True)
    anp_loss(anchors, clean, positives, negatives, TINY, True).backward()

    reference = moved.clone().requires_grad_(True)
    d_ap = (reference - positives).norm(dim=1)
    d_an = (reference - negatives).norm(dim=1)
    gamma = math.exp(-float((d_an.mean() - d_ap.mean()).detach()))
    near = d_an.sort().values[:2].mean()  # floor(4 / 2) = 2 smallest
    shift = F.pairwise_distance(reference, clean).mean()
    expected = gamma * (near - shift)
    expected.backward()
    assert float(anp_loss(moved, clean, positives, negatives, TINY, True)) == pytest.approx(float(expected.detach()))
    assert torch.allclose(anchors.grad, reference.grad)


def test_tride_anp_maximises_the_shift_without_bound():
    clean = unit([1, 0], [0, 1])
    moved = unit([0, 1], [1, 0])  # each anchor moved by sqrt(2)
    assert float(anp_loss(moved, clean, clean, -clean, 10.0, False)) == pytest.approx(-math.sqrt(2), abs=SHIFT_TOL)
    # from the clean anchors the shift still has a gradient (embedding_shift's eps)
    start = clean.clone().requires_grad_(True)
    anp_loss(start, clean, clean, -clean, 10.0, False).backward()
    assert float(start.grad.abs().sum()) > 0


def test_authors_extra_term_hand_worked():
    d_ap = torch.tensor([0.9, 0.1, 1.3, 0.5])
    d_an = torch.tensor([1.0, 0.3, 1.2, 0.2])
    # smallest half: mean(0.1, 0.5) = 0.3 and mean(0.2, 0.3) = 0.25 -> 0.5 * (0.3 - 0.25 + 0.04) = 0.045
    assert float(authors_extra_term(d_ap, d_an, 0.5, 0.04)) == pytest.approx(0.045)
    # clearly separated triplets: the hinge is inactive
    assert float(authors_extra_term(d_ap * 0.1, d_an + 1.0, 0.5, 0.04)) == 0.0
