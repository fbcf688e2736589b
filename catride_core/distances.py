"""The one place that fixes the distance convention of the project.

Embeddings are L2-normalised, and every distance is the Euclidean distance
d(u, v) = ||u - v||_2 on the unit sphere (range [0, 2]); smaller is closer.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor


def paired_distances(x: Tensor, y: Tensor) -> Tensor:
    """Distance between matching rows: d(x_i, y_i).

    Shape:
        x, y: (N, D) -> (N,)
    """
    return (x - y).norm(dim=-1)


def pairwise_distances(x: Tensor, y: Tensor) -> Tensor:
    """All distances d(x_i, y_j), exact up to float rounding.

    Computed as sqrt(|x|^2 + |y|^2 - 2 x.y), clamped at 0 so that rounding on
    near-duplicates never produces a NaN from a negative square root.

    Shape:
        x: (N, D), y: (M, D) -> (N, M)
    """
    squared = (x * x).sum(1, keepdim=True) + (y * y).sum(1)[None, :] - 2.0 * (x @ y.T)
    return squared.clamp_min(0.0).sqrt()


def embedding_shift(moved: Tensor, original: Tensor) -> Tensor:
    """How far each embedding moved from its original: d(moved_i, original_i).

    Uses ``F.pairwise_distance`` (which adds eps = 1e-6 inside the norm) on
    purpose: at the start of an attack ``moved == original`` and the plain norm
    has no gradient there, so a sign-PGD that maximises the shift would never
    leave its starting point. The eps bias is below 1e-4 for D <= 1024.

    Shape:
        moved, original: (N, D) -> (N,)
    """
    return F.pairwise_distance(moved, original)
