"""The one place that fixes the distance convention of the project.

Distances are always computed in at least float32, with autocast off: under
``base.precision: bf16`` the model's forward runs in bfloat16, but a bf16
distance errs by about 1e-2 near 0.2, as wide as a semihard window, so the
miner, the losses, M_lambda and the attacks' objectives would see other
triplets. bfloat16/float16 inputs are cast up; float32 and float64 stay as they are.

Embeddings are L2-normalised, and every distance is the Euclidean distance
d(u, v) = ||u - v||_2 on the unit sphere (range [0, 2]); smaller is closer.
"""

from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F
from torch import Tensor


def full_precision(tensor: Tensor) -> Tensor:
    """A half-precision tensor cast to float32; float32 and float64 unchanged."""
    return tensor.float() if tensor.dtype in (torch.float16, torch.bfloat16) else tensor


def no_autocast(tensor: Tensor) -> contextlib.AbstractContextManager:
    """Autocast switched off on the tensor's device, for a computation that must keep its input's precision."""
    return torch.autocast(tensor.device.type, enabled=False)


def paired_distances(x: Tensor, y: Tensor) -> Tensor:
    """Distance between matching rows: d(x_i, y_i).

    Shape:
        x, y: (N, D) -> (N,)
    """
    with no_autocast(x):
        return (full_precision(x) - full_precision(y)).norm(dim=-1)


def pairwise_distances(x: Tensor, y: Tensor) -> Tensor:
    """All distances d(x_i, y_j), exact up to float rounding.

    Computed as sqrt(|x|^2 + |y|^2 - 2 x.y), clamped at 0 so that rounding on
    near-duplicates never produces a NaN from a negative square root.

    Shape:
        x: (N, D), y: (M, D) -> (N, M)
    """
    with no_autocast(x):
        x, y = full_precision(x), full_precision(y)
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
    with no_autocast(moved):
        return F.pairwise_distance(full_precision(moved), full_precision(original))
