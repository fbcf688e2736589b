import torch

from catride_core.losses import triplet_loss


def slow_triplet(a, p, n, margin):
    total = 0.0
    for i in range(len(a)):
        d_ap = sum((float(x) - float(y)) ** 2 for x, y in zip(a[i], p[i])) ** 0.5
        d_an = sum((float(x) - float(y)) ** 2 for x, y in zip(a[i], n[i])) ** 0.5
        total += max(d_ap - d_an + margin, 0.0)
    return total / len(a)


def test_matches_slow_loop():
    g = torch.Generator().manual_seed(0)
    a, p, n = (torch.nn.functional.normalize(torch.randn(9, 4, generator=g), dim=1) for _ in range(3))
    assert abs(float(triplet_loss(a, p, n, 0.2)) - slow_triplet(a, p, n, 0.2)) < 1e-6


def test_hand_worked_example():
    # 1-D: d(a,p) = 1, d(a,n) = 0.5 -> [1 - 0.5 + 0.2]_+ = 0.7; second triplet easy -> 0
    a = torch.tensor([[0.0], [0.0]])
    p = torch.tensor([[1.0], [0.1]])
    n = torch.tensor([[0.5], [1.0]])
    assert torch.isclose(triplet_loss(a, p, n, 0.2), torch.tensor(0.35))
