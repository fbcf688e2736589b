"""Toy models and data of the attack tests, on which every ranking can be worked out by hand."""

import math
from collections.abc import Callable

import pytest
import torch
from torch import nn


class AngleEmbedder(nn.Module):
    """One-pixel images p in [0, 1] -> the point at angle pi * p on the unit circle.

    Distances are 2 sin(pi |p - p'| / 2), increasing in |p - p'|, so every ranking
    is the ranking of pixel values by |p - p'|, which can be worked out by hand.
    """

    def __init__(self, scale: float = math.pi) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(scale))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        angle = self.scale * images.flatten(1)[:, 0]
        return torch.stack([angle.cos(), angle.sin()], 1)


@pytest.fixture
def angle_embedder() -> type[AngleEmbedder]:
    """The class, so that a test can build several (``angle_embedder(scale=2.0)``)."""
    return AngleEmbedder


@pytest.fixture
def on_circle() -> Callable[[list[float]], torch.Tensor]:
    """Pixel values -> their ``AngleEmbedder`` embeddings. Shape: (n,) -> (n, 2)"""

    def embeddings(pixels: list[float]) -> torch.Tensor:
        return AngleEmbedder()(torch.tensor(pixels).view(-1, 1, 1, 1)).detach()

    return embeddings


@pytest.fixture
def toy_data() -> tuple[torch.Tensor, torch.Tensor]:
    """40 one-pixel images, jittered so there are no distance ties, in classes of 4 neighbours."""
    n = 40
    jitter = torch.rand(n, generator=torch.Generator().manual_seed(0))
    pixels = (torch.arange(n) + 0.2 + 0.6 * jitter) / n
    return pixels.view(n, 1, 1, 1), torch.arange(n) // 4
