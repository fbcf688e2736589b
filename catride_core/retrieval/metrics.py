"""Benign retrieval metrics (docs/method.md sections 1 and 6): R@K, mAP, mAP@R, NMI.

Every test item is a query against a gallery; the query's own gallery item is
removed from its ranking *by index*, so duplicates of it stay in the list.
"""

from __future__ import annotations

from collections.abc import Sequence

import faiss
import numpy as np
import torch
from torch import Tensor

from catride_core.distances import pairwise_distances
from catride_core.retrieval.knn import nearest_neighbors


def rank_metrics(
    queries: Tensor,
    query_labels: Tensor,
    gallery: Tensor,
    gallery_labels: Tensor,
    exclude: Tensor | None,
    recall_at: Sequence[int],
    block_size: int = 1024,
) -> dict[str, Tensor]:
    """Per-query ranking metrics over the full ranking of the gallery.

    The gallery is ranked by distance for each query; ties are broken by
    gallery index (stable sort). The query's own item ``exclude[i]`` is removed
    from its ranking by index (-1: nothing removed). With R = the number of
    gallery items of the query's label (own item excluded) and rel(i), P(i) the
    relevance and precision at rank i:

    - ``R@K``: 1 if any of the K nearest items has the query's label, else 0.
    - ``AP``: (1/R) sum_i P(i) rel(i) over the full ranking.
    - ``AP@R``: (1/R) sum_{i <= R} P(i) rel(i) (Musgrave et al., "MAP@R").

    A query with no relevant gallery item (R = 0) gets AP = AP@R = 0.

    Distances are computed in float64 whatever the input dtype, so the ranking
    does not depend on ``block_size`` (float32 matmul rounds differently for
    different block shapes) and near neighbours keep their order. Queries are
    ranked ``block_size`` at a time: memory is O(block_size * G).

    Args:
        queries: Shape: (Q, D)
        query_labels: Shape: (Q,)
        gallery: Shape: (G, D)
        gallery_labels: Shape: (G,)
        exclude: gallery index of each query's own item, -1 for none, or None. Shape: (Q,)
        recall_at: the K of each ``R@K``, each >= 1.
        block_size: queries ranked at once.

    Returns:
        ``{"R@K": ..., "AP": ..., "AP@R": ...}`` as float64 on the queries' device.
        Shape: each (Q,)
    """
    _check_inputs(queries, query_labels, gallery, gallery_labels, exclude)
    if any(k < 1 for k in recall_at):
        raise ValueError(f"recall_at must hold K >= 1, got {list(recall_at)}")
    if block_size < 1:
        raise ValueError(f"block_size must be >= 1, got {block_size}")
    device = queries.device
    queries = queries.detach()
    gallery = gallery.detach().to(device, torch.float64)
    gallery_labels = gallery_labels.to(device)
    query_labels = query_labels.to(device)
    if exclude is not None:
        exclude = exclude.to(device)

    blocks = []
    for start in range(0, queries.shape[0], block_size):
        stop = start + block_size
        blocks.append(
            _rank_block(
                queries[start:stop].to(torch.float64),
                query_labels[start:stop],
                gallery,
                gallery_labels,
                None if exclude is None else exclude[start:stop],
                recall_at,
            )
        )
    names = [f"R@{k}" for k in recall_at] + ["AP", "AP@R"]
    if not blocks:
        return {name: torch.zeros(0, dtype=torch.float64, device=device) for name in names}
    return {name: torch.cat([block[name] for block in blocks]) for name in names}


def _rank_block(
    queries: Tensor,
    query_labels: Tensor,
    gallery: Tensor,
    gallery_labels: Tensor,
    exclude: Tensor | None,
    recall_at: Sequence[int],
) -> dict[str, Tensor]:
    """``rank_metrics`` for one block of queries (all float64, one device)."""
    n_gallery = gallery.shape[0]
    distances = pairwise_distances(queries, gallery)
    relevant = query_labels[:, None] == gallery_labels[None, :]
    if exclude is not None:
        rows = (exclude >= 0).nonzero().squeeze(1)
        own = exclude[rows]
        # the own item moves to the last rank and stops counting as relevant, so
        # it neither takes a rank from anyone nor scores a hit; a duplicate of it keeps its place
        distances[rows, own] = torch.inf
        relevant[rows, own] = False
    order = distances.argsort(dim=1, stable=True)
    # each (B, G) buffer goes as soon as it is used, so that about three are alive at once
    del distances
    ranked = relevant.gather(1, order)
    del order, relevant
    hits = ranked.cumsum(1)
    n_relevant = hits[:, -1]
    metrics = {f"R@{k}": (hits[:, min(k, n_gallery) - 1] > 0).double() for k in recall_at}

    ranks = torch.arange(1, n_gallery + 1, dtype=torch.float64, device=queries.device)
    precision = hits.double()
    del hits
    precision.div_(ranks).mul_(ranked)
    # dense sums rather than scatter-adds: a fixed reduction order on every device
    denominator = n_relevant.clamp_min(1).double()
    metrics["AP"] = precision.sum(1) / denominator
    precision.mul_(ranks[None, :] <= n_relevant[:, None])
    metrics["AP@R"] = precision.sum(1) / denominator
    return metrics


def recall_at_1(
    queries: Tensor,
    query_labels: Tensor,
    gallery: Tensor,
    gallery_labels: Tensor,
    exclude: Tensor | None,
    block_size: int = 4096,
) -> Tensor:
    """Whether each query's nearest gallery item has the query's label.

    Exact faiss search (``nearest_neighbors``), cheap on big galleries; the
    query's own item ``exclude[i]`` is removed by index (-1: nothing removed).
    Used to score adversarial queries.

    Args:
        queries: Shape: (Q, D)
        query_labels: Shape: (Q,)
        gallery: Shape: (G, D)
        gallery_labels: Shape: (G,)
        exclude: gallery index of each query's own item, -1 for none, or None. Shape: (Q,)
        block_size: queries searched at once.

    Returns:
        1.0 for a hit, 0.0 for a miss, float64 on the queries' device. Shape: (Q,)
    """
    _check_inputs(queries, query_labels, gallery, gallery_labels, exclude)
    _, nearest = nearest_neighbors(queries, gallery, k=1, exclude=exclude, block_size=block_size)
    nearest_labels = gallery_labels.cpu()[nearest[:, 0].cpu()]
    return (nearest_labels == query_labels.cpu()).double().to(queries.device)


def nmi(embeddings: Tensor, labels: Tensor, n_clusters: int, seed: int) -> float:
    """Normalised mutual information of faiss k-means clusters against the labels.

    k-means is faiss's default (25 iterations, seeded initialisation and
    subsampling, so the result is fixed by ``seed``); each item is assigned to
    its nearest centroid and the assignment compared with the labels by
    ``sklearn.metrics.normalized_mutual_info_score``.

    Args:
        embeddings: Shape: (N, D)
        labels: Shape: (N,)
        n_clusters: k, usually the number of classes (at most N).
        seed: seed of the k-means.

    Returns:
        NMI in [0, 1].
    """
    if not 1 <= n_clusters <= embeddings.shape[0]:
        raise ValueError(f"{n_clusters} clusters asked of {embeddings.shape[0]} embeddings")
    if labels.shape != embeddings.shape[:1]:
        raise ValueError(f"labels of shape {tuple(labels.shape)} for {embeddings.shape[0]} embeddings")
    # imported here: scikit-learn takes about a second to import, and only NMI needs it
    from sklearn.metrics import normalized_mutual_info_score

    data = np.ascontiguousarray(embeddings.detach().cpu().float().numpy())
    # min_points_per_centroid only silences faiss's stderr warning on small sets
    kmeans = faiss.Kmeans(data.shape[1], n_clusters, seed=seed, min_points_per_centroid=1)
    kmeans.train(data)
    _, assigned = kmeans.index.search(data, 1)
    return float(normalized_mutual_info_score(labels.cpu().numpy(), assigned[:, 0]))


def retrieval_metrics(
    embeddings: Tensor,
    labels: Tensor,
    recall_at: Sequence[int],
    block_size: int,
    seed: int,
) -> dict[str, float]:
    """Benign metrics of a test set against itself, in percent.

    Every item is a query, the gallery is the whole set and each query's own
    item is excluded by index. R@K, mAP and mAP@R are means over the queries
    (see ``rank_metrics``); NMI uses k = number of distinct labels.

    Args:
        embeddings: Shape: (N, D)
        labels: Shape: (N,)
        recall_at: the K of each ``R@K``.
        block_size: queries ranked at once.
        seed: seed of the NMI k-means.

    Returns:
        ``{"R@K": ..., "mAP": ..., "mAP@R": ..., "NMI": ...}``, plain floats in
        0..100 rounded to 4 decimals so that saved JSON is byte-stable.
    """
    own = torch.arange(embeddings.shape[0], device=embeddings.device)
    per_query = rank_metrics(embeddings, labels, embeddings, labels, own, recall_at, block_size)
    means = {f"R@{k}": per_query[f"R@{k}"].mean() for k in recall_at}
    means["mAP"] = per_query["AP"].mean()
    means["mAP@R"] = per_query["AP@R"].mean()
    summary = {name: round(100.0 * value.item(), 4) for name, value in means.items()}
    n_classes = int(labels.unique().numel())
    summary["NMI"] = round(100.0 * nmi(embeddings, labels, n_classes, seed), 4)
    return summary


def _check_inputs(
    queries: Tensor,
    query_labels: Tensor,
    gallery: Tensor,
    gallery_labels: Tensor,
    exclude: Tensor | None,
) -> None:
    """Fail on shapes that do not match and on non-finite embeddings."""
    n_queries, n_gallery = queries.shape[0], gallery.shape[0]
    if queries.ndim != 2 or gallery.ndim != 2 or queries.shape[1] != gallery.shape[1]:
        raise ValueError(f"queries {tuple(queries.shape)} and gallery {tuple(gallery.shape)} must be (N, D)")
    if n_gallery == 0:
        raise ValueError("empty gallery")
    if query_labels.shape != (n_queries,) or gallery_labels.shape != (n_gallery,):
        raise ValueError(
            f"labels {tuple(query_labels.shape)}, {tuple(gallery_labels.shape)} "
            f"do not match {n_queries} queries and {n_gallery} gallery items"
        )
    if exclude is not None:
        if exclude.shape != (n_queries,):
            raise ValueError(f"exclude of shape {tuple(exclude.shape)} for {n_queries} queries")
        if n_queries and not bool(((exclude >= -1) & (exclude < n_gallery)).all()):
            raise ValueError(f"exclude must hold gallery indices in [-1, {n_gallery})")
    if not (bool(torch.isfinite(queries).all()) and bool(torch.isfinite(gallery).all())):
        raise ValueError("non-finite embeddings")
