"""Negative miners for SPC-2 batches: embeddings and labels in, (a, p, n) indices out.

Mining never sees the loss: a miner returns index tensors and the loss takes
the embeddings they select, so the two stay independent. In an SPC-2 batch the
anchors are the even positions and each positive is its odd partner; a miner
only chooses the negative.
"""

from __future__ import annotations

import torch
from torch import Tensor

from catride_core.distances import pairwise_distances
from catride_core.errors import DataError


def gradual_margin(margin: float, epoch: int, epochs: int) -> float:
    """m (1 - t / (2T))^2: the semihard window narrows as training goes on."""
    return margin * (1.0 - epoch / (2.0 * epochs)) ** 2


@torch.no_grad()
def mine_triplets(
    embeddings: Tensor,
    labels: Tensor,
    miner: str,
    margin: float,
    generator: torch.Generator,
    epoch: int = 0,
    epochs: int = 1,
) -> tuple[Tensor, Tensor, Tensor]:
    """Choose one negative per anchor of an SPC-2 batch.

    Args:
        embeddings: batch embeddings laid out [a1, p1, a2, p2, ...]. Shape: (2P, D)
        labels: their classes. Shape: (2P,)
        miner: ``random`` (uniform over other labels), ``semihard`` (uniform over
            d_ap < d_an < d_ap + margin, falling back to random), or
            ``gradual_semihard`` (semihard with ``gradual_margin``).
        margin: triplet margin m.
        generator: CPU generator for every random choice.
        epoch, epochs: t and T of ``gradual_semihard``.

    Returns:
        anchor, positive and negative indices into the batch. Shape: 3 x (P,)
    """
    anchors = torch.arange(0, embeddings.shape[0] - 1, 2, device=embeddings.device)
    positives = anchors + 1
    is_negative = labels[anchors][:, None] != labels[None, :]
    if not bool(is_negative.any(1).all()):
        raise DataError("a batch holds an anchor with no other-label item to use as negative (a dataset of one class?)")
    scores = torch.rand(is_negative.shape, generator=generator).to(embeddings.device)
    candidates = is_negative
    if miner in ("semihard", "gradual_semihard"):
        window = margin if miner == "semihard" else gradual_margin(margin, epoch, epochs)
        d_an = pairwise_distances(embeddings[anchors], embeddings)
        d_ap = d_an.gather(1, positives[:, None])
        semihard = is_negative & (d_an > d_ap) & (d_an < d_ap + window)
        # anchors without a semihard negative fall back to any negative
        candidates = torch.where(semihard.any(1, keepdim=True), semihard, is_negative)
    elif miner != "random":
        raise ValueError(f"unknown miner {miner!r}")
    negatives = scores.masked_fill(~candidates, -1.0).argmax(1)
    return anchors, positives, negatives
