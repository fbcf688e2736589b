"""Collapseness (METHOD.md section 4.4): soft maxima of triplet distances."""

from __future__ import annotations

import torch
from torch import Tensor


def soft_max_mean(distances: Tensor, inverse_temperature: float) -> Tensor:
    """M_lambda(D) = sum_i w_i D_i / sum_i w_i with w_i = exp(lambda (D_i - max_j D_j)).

    A soft maximum: the mean as lambda -> 0, the max as lambda -> inf. The
    weights carry gradients; subtracting the max only keeps exp() finite.

    Shape:
        distances: (B,) -> scalar
    """
    weights = torch.exp(inverse_temperature * (distances - distances.max()))
    return (weights * distances).sum() / weights.sum()


def collapseness(d_ap: Tensor, d_an: Tensor, inverse_temperature: float) -> Tensor:
    """C = M(D_ap) - M(D_an); C > 0 means the far positives lie beyond the far negatives.

    Shape:
        d_ap, d_an: (B,) -> scalar
    """
    return soft_max_mean(d_ap, inverse_temperature) - soft_max_mean(d_an, inverse_temperature)
