"""Triplet margin loss on normalised embeddings (docs/method.md section 3)."""

from __future__ import annotations

from torch import Tensor

from catride_core.distances import paired_distances


def triplet_loss(anchors: Tensor, positives: Tensor, negatives: Tensor, margin: float) -> Tensor:
    """mean_i [ d(a_i, p_i) - d(a_i, n_i) + margin ]_+ .

    Shape:
        anchors, positives, negatives: (B, D) -> scalar
    """
    hinge = paired_distances(anchors, positives) - paired_distances(anchors, negatives) + margin
    return hinge.clamp_min(0.0).mean()
