"""Ranking-list arithmetic of the ranking attacks: lists, items ahead, prank, R@1 (docs/method.md section 5).

"q's list" is the gallery ranked by distance to q *without q's own item*;
"prank" of an item in q's list is the share of that list ranked strictly ahead
of it, in %. The list is held as a boolean mask of its *competing* members:
every gallery item but the list's own query and the ranked item (or the clean
copy that a perturbed candidate replaces, so at eps = 0 the CA prank of a pair
equals its QA prank). Pure functions on tensors; float64 where a count or a
tie could change.
"""

from __future__ import annotations

import torch
from torch import Tensor

from catride_core.attacks.base import Gallery
from catride_core.distances import pairwise_distances
from catride_core.retrieval.metrics import recall_at_1


def own_item_mask(queries: Tensor, n_gallery: int) -> Tensor:
    """True everywhere except at each row's own gallery slot. Shape: (B,) -> (B, N)"""
    keep = torch.ones(len(queries), n_gallery, dtype=torch.bool, device=queries.device)
    keep[torch.arange(len(queries), device=queries.device), queries] = False
    return keep


def competing_mask(owners: Tensor, ranked: Tensor, n_gallery: int) -> Tensor:
    """The other members of each ranking list: every gallery item but two.

    Args:
        owners: gallery slot of each list's query, never in its own list. Shape: (R,)
        ranked: gallery slot of the ranked item (or of the clean copy it replaces). Shape: (R,)
        n_gallery: N.

    Returns:
        Shape: (R, N) bool
    """
    competing = torch.ones(len(owners), n_gallery, dtype=torch.bool, device=owners.device)
    rows = torch.arange(len(owners), device=owners.device)
    competing[rows, owners] = False
    competing[rows, ranked] = False
    return competing


def count_ahead(list_distances: Tensor, item_distances: Tensor, competing: Tensor) -> Tensor:
    """How many competing gallery items are strictly nearer to a list's query than the ranked item.

    Args:
        list_distances: distance from each list's query to every gallery item. Shape: (R, N)
        item_distances: distance from each list's query to the ranked item. Shape: (R,)
        competing: the other members of each list (``competing_mask``). Shape: (R, N)

    Returns:
        Shape: (R,) int64
    """
    return ((list_distances < item_distances[:, None]) & competing).sum(1)


def prank(n_ahead: Tensor, competing: Tensor) -> Tensor:
    """prank (%): share of the list (its other members plus the ranked item) ahead of the item.

    Shape:
        n_ahead: (...,), competing: (..., N) -> (...,) float64
    """
    return 100.0 * n_ahead.double() / (competing.sum(-1) + 1).double()


def hinge_means(hinge: Tensor, competing: Tensor) -> Tensor:
    """Mean of a hinge over the other members of each list (an attack's terms; their mean is its objective).

    Shape:
        hinge: (..., N), competing: (..., N) -> (...)
    """
    return (hinge * competing).sum(-1) / competing.sum(-1).clamp_min(1)


def query_competing_mask(gallery: Gallery, queries: Tensor, targets: Tensor) -> Tensor:
    """The other members of each query's list for each of its targets. Shape: (B,), (B, K) -> (B, K, N)"""
    lists = torch.arange(len(queries), device=queries.device).repeat_interleave(targets.shape[1])
    competing = competing_mask(queries[lists], targets.reshape(-1), gallery.size)
    return competing.view(*targets.shape, gallery.size)


def query_ranks(gallery: Gallery, queries: Tensor, targets: Tensor, embeddings: Tensor) -> tuple[Tensor, Tensor]:
    """Items ahead of each target in each (clean or perturbed) query's list, and the lists.

    Shape:
        queries: (B,), targets: (B, K), embeddings: (B, D) -> (B, K) int64 and (B, K, N) bool
    """
    distances = pairwise_distances(embeddings.double(), gallery.embeddings.double())
    competing = query_competing_mask(gallery, queries, targets)
    item = distances.gather(1, targets)
    n_ahead = count_ahead(distances.repeat_interleave(targets.shape[1], 0), item.reshape(-1), competing.flatten(0, 1))
    return n_ahead.view(targets.shape), competing


def query_recall_at_1(gallery: Gallery, queries: Tensor, embeddings: Tensor) -> Tensor:
    """R@1 (%) of each attacked image, its own gallery slot excluded.

    Shape:
        queries: (B,), embeddings: (B, D) -> (B,) float64, each 0 or 100
    """
    query_labels = gallery.labels[queries]
    hits = recall_at_1(embeddings, query_labels, gallery.embeddings, gallery.labels, queries, gallery.block_size)
    return 100.0 * hits.double()
