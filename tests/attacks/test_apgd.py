import pytest
import torch
from torch import nn

from catride_core.attacks.apgd import adaptive_pgd, checkpoints
from catride_core.attacks.pgd import pgd


class PixelsAsEmbeddings(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(1.0))

    def forward(self, images):
        return self.scale * images.flatten(1)


def _images(n=6, seed=0):
    return torch.rand(n, 1, 3, 3, generator=torch.Generator().manual_seed(seed))


def test_checkpoints_are_apgds():
    # p = 0, 0.22, 0.41, 0.57, 0.7, 0.8, 0.87, 0.93, 0.99 (Croce & Hein 2020) of 100 iterations
    assert checkpoints(100) == [22, 41, 57, 70, 80, 87, 93, 99]


def test_stays_in_the_ball_and_the_box_and_keeps_the_best_iterate():
    images = _images()
    target = torch.rand(6, 9, generator=torch.Generator().manual_seed(1))
    losses = lambda e: ((e - target) ** 2).sum(1)  # noqa: E731
    result = adaptive_pgd(PixelsAsEmbeddings(), images, losses, eps=0.1, steps=20)
    assert (result.images - images).abs().max() <= 0.1 + 1e-6
    assert result.images.min() >= 0 and result.images.max() <= 1
    with torch.no_grad():
        assert torch.allclose(losses(PixelsAsEmbeddings()(result.images)), result.losses)
        assert (result.losses <= losses(images.flatten(1))).all()


def test_reaches_at_least_fixed_step_pgd_on_a_smooth_objective():
    images = _images()
    target = torch.rand(6, 9, generator=torch.Generator().manual_seed(1))
    losses = lambda e: ((e - target) ** 2).sum(1)  # noqa: E731
    fixed = pgd(PixelsAsEmbeddings(), images, lambda e: losses(e).mean(), 0.1, 0.03, 20).images
    adaptive = adaptive_pgd(PixelsAsEmbeddings(), images, losses, eps=0.1, steps=20)
    with torch.no_grad():
        assert (adaptive.losses <= losses(fixed.flatten(1)) + 1e-7).all()


@pytest.mark.parametrize("steps", [0, 1, 5])
def test_seeded_random_start_is_reproducible(steps):
    images = _images()
    losses = lambda e: e.sum(1)  # noqa: E731
    runs = [adaptive_pgd(PixelsAsEmbeddings(), images, losses, 0.1, steps, True, torch.Generator().manual_seed(s))
            for s in (3, 3, 4)]
    assert torch.equal(runs[0].images, runs[1].images)
    assert steps > 0 or not torch.equal(runs[0].images, runs[2].images)
    assert (runs[0].images - images).abs().max() <= 0.1 + 1e-6
