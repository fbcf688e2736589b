import math

import torch

from catride_core.losses import collapseness, soft_max_mean


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
