"""Benign retrieval metrics (docs/method.md sections 1 and 6): R@K, mAP, mAP@R, mAP@10, NMI.

Every test item is a query against a gallery; the query's own gallery item is
removed from its ranking *by index*, so duplicates of it stay in the list.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import NamedTuple

import faiss
import numpy as np
import torch
from torch import Tensor

from catride_core.retrieval.knn import nearest_neighbors
from catride_core.runtime import derive_seed

# k-means iterations of NMI, at most: faiss's default, the value NMI has always
# used (faiss stops earlier once an iteration leaves the objective unchanged)
KMEANS_ITERATIONS = 25
#: the fixed depth of RobRank's "mAP@R" (its validation passes rs=[10]): reported as mAP@10
AP_DEPTH = 10

# Above this mean number of relevant items per query (over a block), one
# binary search of every gallery item among the relevant distances is cheaper
# than one counting pass over the gallery per relevant item. Both give the same
# ranks; this only picks the faster one (SOP: R ~ 5 counts, CUB: R ~ 6,049 searches).
_MAX_MEAN_R_FOR_COUNTING = 8
# MKL's float64 product rounds the rows of an incomplete panel of 4 rows
# differently from the same rows in a full one (measured: a row's values agree
# bit for bit across block shapes exactly when the row count is a multiple of
# 4), so each block's product is taken on a multiple of this many rows.
_PRODUCT_ROWS = 8


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
    - ``AP@10``: (1/10) sum_{i <= 10} P(i) rel(i), RobRank's "mAP@R" with R
      fixed at ``AP_DEPTH`` = 10 for every query (not the number of relevant items).

    A query with no relevant gallery item (R = 0) gets AP = AP@R = AP@10 = 0.

    No ranking is sorted: every metric follows from the ranks of the relevant
    items alone. The k-th relevant item in (distance, index) order has rank
    r_k = 1 + the number of gallery items ahead of it (smaller distance, or
    equal distance and smaller index; the own item never counts), so that
    R@K = [r_1 <= K], AP = (1/R) sum_k k / r_k, AP@R the same sum over
    r_k <= R and AP@10 the sum over r_k <= 10 divided by 10. The relevant distances are sorted per query (R log R) and the
    gallery is counted against them, by one pass per relevant item when R is
    small or by a binary search of every item when it is large (G log R).
    The sums are taken in rank order, one term after the other, as a loop over
    the definition would.

    Distances are computed in float64 whatever the input dtype, so near
    neighbours keep their order, and on a multiple of 8 query rows at a time,
    so that on CPU the ranking does not depend on ``block_size`` (the matrix
    product rounds the rows of an incomplete panel differently). Queries are
    ranked ``block_size`` at a time, on the queries' device: memory is
    O(block_size * G). The gallery is counted on squared distances, before
    their square root: ``_squared_bounds`` turns each relevant distance into
    the exact range of squared values that round to it, so no comparison
    changes and a (B, G) square root is saved.

    Args:
        queries: Shape: (Q, D)
        query_labels: Shape: (Q,)
        gallery: Shape: (G, D)
        gallery_labels: Shape: (G,)
        exclude: gallery index of each query's own item, -1 for none, or None. Shape: (Q,)
        recall_at: the K of each ``R@K``, each >= 1.
        block_size: queries ranked at once.

    Returns:
        ``{"R@K": ..., "AP": ..., "AP@R": ..., "AP@10": ...}`` as float64 on the queries' device.
        Shape: each (Q,)
    """
    _check_inputs(queries, query_labels, gallery, gallery_labels, exclude)
    if any(k < 1 for k in recall_at):
        raise ValueError(f"recall_at must hold K >= 1, got {list(recall_at)}")
    if block_size < 1:
        raise ValueError(f"block_size must be >= 1, got {block_size}")
    device = queries.device
    n_queries, n_gallery = queries.shape[0], gallery.shape[0]
    queries = queries.detach()
    gallery = gallery.detach().to(device, torch.float64)
    gallery_labels = gallery_labels.to(device, torch.long)
    query_labels = query_labels.to(device, torch.long)
    if exclude is None:
        exclude = torch.full((n_queries,), -1, dtype=torch.long, device=device)
    exclude = exclude.to(device, torch.long)

    # the gallery grouped by label: the items of each query's class are one
    # segment of by_label, in increasing gallery index
    by_label = gallery_labels.argsort(stable=True)
    classes, sizes = gallery_labels[by_label].unique_consecutive(return_counts=True)
    starts = sizes.cumsum(0) - sizes
    class_of = torch.searchsorted(classes, query_labels).clamp_max(len(classes) - 1)
    present = classes[class_of] == query_labels
    segment_start = starts[class_of]
    segment_size = torch.where(present, sizes[class_of], 0)
    own_is_relevant = (exclude >= 0) & (gallery_labels[exclude.clamp_min(0)] == query_labels)
    n_relevant = segment_size - own_is_relevant.long()
    # queries taken in order of decreasing R: in every block the queries that have
    # a k-th relevant item are then a prefix, and counting passes skip the rest
    order = n_relevant.argsort(descending=True, stable=True)

    names = [f"R@{k}" for k in recall_at] + ["AP", "AP@R", f"AP@{AP_DEPTH}"]
    out = {name: torch.zeros(n_queries, dtype=torch.float64, device=device) for name in names}
    width = min(block_size, n_queries)
    # one set of (B, G) buffers for all blocks: fresh ones cost more than the arithmetic
    padded_width = -(-width // _PRODUCT_ROWS) * _PRODUCT_ROWS
    products = torch.empty(padded_width, n_gallery, dtype=torch.float64, device=device)
    squared_buffer = torch.empty(width, n_gallery, dtype=torch.float64, device=device)
    gallery_norms = (gallery * gallery).sum(1)
    for start in range(0, n_queries, block_size):
        rows = order[start : start + block_size]
        b = len(rows)
        squared = _block_squared_distances(
            queries[rows].to(torch.float64), gallery, gallery_norms, products, squared_buffer[:b]
        )
        own = exclude[rows]
        with_own = (own >= 0).nonzero().squeeze(1)
        # the own item is ahead of no one and relevant to no one; a duplicate of it keeps its place
        squared[with_own, own[with_own]] = torch.inf
        relevant = _sorted_relevant(squared, by_label, segment_start[rows], segment_size[rows], own)
        if int(n_relevant[rows].sum()) <= _MAX_MEAN_R_FOR_COUNTING * b:
            ranks = _ranks_by_counting(squared, relevant, n_relevant[rows], products[:b])
        else:
            ranks = _ranks_by_search(squared, relevant, n_relevant[rows], products[:b].view(torch.long))
        for name, values in _metrics_from_ranks(ranks, n_relevant[rows], recall_at).items():
            out[name][rows] = values
    return out


class _Relevant(NamedTuple):
    """Each query's relevant items in rank order (by distance, ties by gallery index).

    Row i holds its R_i relevant items first, then padding: infinite distances
    and bounds. ``lower`` and ``upper`` bound the squared distances that round
    to each distance (``_squared_bounds``).

    Shape:
        each (B, max R_i)
    """

    distances: Tensor
    items: Tensor
    lower: Tensor
    upper: Tensor


def _block_squared_distances(
    queries: Tensor, gallery: Tensor, gallery_norms: Tensor, products: Tensor, out: Tensor
) -> Tensor:
    """What ``pairwise_distances(queries, gallery)`` computes before its clamp and square root.

    Same float64 operations in the same order (|x|^2 + |y|^2, minus 2 x.y),
    written into given buffers instead of (B, G) temporaries; ``_distance``
    finishes any of them into the distance ``pairwise_distances`` returns. The
    product is taken on the queries padded with zero rows to a multiple of
    ``_PRODUCT_ROWS``, so each row's values do not depend on B.

    Shape:
        queries: (B, D), gallery: (G, D), gallery_norms: (G,), products: (>= padded B, G), out: (B, G) -> out
    """
    b = queries.shape[0]
    padded = -(-b // _PRODUCT_ROWS) * _PRODUCT_ROWS
    if padded > b:
        queries_padded = torch.zeros(padded, queries.shape[1], dtype=queries.dtype, device=queries.device)
        queries_padded[:b] = queries
    else:
        queries_padded = queries
    torch.mm(queries_padded, gallery.T, out=products[:padded])
    torch.add((queries * queries).sum(1, keepdim=True), gallery_norms[None, :], out=out)
    return out.sub_(products[:b], alpha=2.0)


def _distance(squared: Tensor) -> Tensor:
    """The distance ``pairwise_distances`` makes of a squared distance: clamped at 0, square root."""
    return squared.clamp_min(0.0).sqrt()


def _squared_bounds(distances: Tensor) -> tuple[Tensor, Tensor]:
    """The squared distances s that ``_distance`` turns into each distance t: lower <= s <= upper.

    The square root is correctly rounded and monotone, so for every s:
    ``_distance(s) < t`` exactly when ``s < lower``, and ``_distance(s) <= t``
    exactly when ``s <= upper``. t * t lies a few floats from both ends, which
    are found by stepping one float at a time. For t = 0 every negative s
    counts as well (lower = -inf); an infinite t gets infinite bounds.

    Shape:
        distances: any -> 2 x the same
    """
    finite = distances.isfinite()
    start = torch.where(finite, distances * distances, torch.inf)

    def step(bound: Tensor, direction: float, keep_going: Callable[[Tensor, Tensor], Tensor]) -> Tensor:
        for _ in range(64):
            moved = torch.nextafter(bound, torch.full_like(bound, direction))
            going = finite & keep_going(bound, moved)
            if not bool(going.any()):
                return bound
            bound = torch.where(going, moved, bound)
        raise RuntimeError("squared-distance bounds did not converge")

    # lower: up while below t, then down while the float below still gives at least t
    lower = step(start, torch.inf, lambda bound, moved: _distance(bound) < distances)
    lower = step(lower, -torch.inf, lambda bound, moved: (distances > 0) & (_distance(moved) >= distances))
    lower = torch.where(finite & (distances == 0), -torch.inf, lower)
    # upper: down while above t, then up while the float above still gives at most t
    upper = step(start, -torch.inf, lambda bound, moved: _distance(bound) > distances)
    upper = step(upper, torch.inf, lambda bound, moved: _distance(moved) <= distances)
    return lower, upper


def _sorted_relevant(
    squared: Tensor, by_label: Tensor, segment_start: Tensor, segment_size: Tensor, own: Tensor
) -> _Relevant:
    """Each query's relevant items in rank order, with their distances and squared-distance bounds.

    Shape:
        squared: (B, G), by_label: (G,), the others: (B,) -> each field (B, max R_i)
    """
    width = int(segment_size.max()) if len(segment_size) else 0
    columns = torch.arange(width, device=squared.device)
    valid = columns[None, :] < segment_size[:, None]
    items = by_label[(segment_start[:, None] + columns).clamp_max(len(by_label) - 1)]
    valid &= items != own[:, None]
    item_distances = _distance(squared.gather(1, items)).masked_fill_(~valid, torch.inf)
    # the segment is in index order, so a stable sort leaves equal distances by index
    distances, position = item_distances.sort(dim=1, stable=True)
    n_kept = int(valid.sum(1).max()) if width else 0
    distances = distances[:, :n_kept].contiguous()
    lower, upper = _squared_bounds(distances)
    return _Relevant(distances, items.gather(1, position)[:, :n_kept], lower, upper)


def _ranks_by_counting(squared: Tensor, relevant: _Relevant, n_relevant: Tensor, scratch: Tensor) -> Tensor:
    """Ranks of the relevant items, two counting passes over the gallery per relevant item.

    Rows must come in order of decreasing ``n_relevant``. Column k of the result
    is the rank of each query's (k+1)-th relevant item (meaningless past R).

    Shape:
        squared: (B, G), relevant: (B, W) each, n_relevant: (B,), scratch: (B, G) float64 -> (B, W)
    """
    ranks = torch.zeros(relevant.items.shape, dtype=torch.long, device=squared.device)
    gallery_index = torch.arange(squared.shape[1], device=squared.device)
    for k, n in enumerate(_rows_per_column(n_relevant, relevant.items.shape[1])):
        block = squared[:n]
        # comparisons written as 0.0 / 1.0 and summed in float64 (exact below 2^53):
        # several times faster than summing a bool tensor
        closer = torch.lt(block, relevant.lower[:n, k : k + 1], out=scratch[:n]).sum(1)
        at_most = torch.le(block, relevant.upper[:n, k : k + 1], out=scratch[:n]).sum(1)
        # the item itself is at its own distance; anything more is an exact tie
        tied = (at_most - closer > 1).nonzero().squeeze(1)
        closer = closer.long()
        if len(tied):
            same = _distance(block[tied]) == relevant.distances[tied, k : k + 1]
            earlier = gallery_index[None, :] < relevant.items[tied, k : k + 1]
            closer[tied] += (same & earlier).sum(1)
        ranks[:n, k] = closer + 1
    return ranks


def _ranks_by_search(squared: Tensor, relevant: _Relevant, n_relevant: Tensor, positions: Tensor) -> Tensor:
    """Ranks of the relevant items, by placing every gallery item among them.

    Each item's position p = the number of relevant items ahead of it; the
    (k+1)-th relevant item's rank is then the number of items with p <= k
    (itself and the relevant ones before it included). Column k of the result
    is meaningless past R.

    Shape:
        squared: (B, G), relevant: (B, W) each, n_relevant: (B,), positions: (B, G) int64 -> (B, W)
    """
    b, width = relevant.items.shape
    device = squared.device
    items = relevant.items
    # relevant items strictly closer: upper < s, as t < distance(s)
    torch.searchsorted(relevant.upper, squared, out=positions)
    # an item at exactly a relevant item's distance goes after it when its index is larger
    padding = torch.full((b, 1), torch.inf, dtype=squared.dtype, device=device)
    tied = torch.cat([relevant.lower, padding], 1).gather(1, positions) <= squared
    valid = torch.arange(width, device=device)[None, :] < n_relevant[:, None]
    relevant_rows, relevant_columns = valid.nonzero(as_tuple=True)
    # a relevant item ties with itself, and its position is set below: not worth correcting
    tied[relevant_rows, items[relevant_rows, relevant_columns]] = False
    tie_rows, tie_items = tied.nonzero(as_tuple=True)
    del tied
    # a few ties at a time, so that the (ties, W) comparison stays small
    chunk = max(1, 2**22 // max(width, 1))
    for start in range(0, len(tie_rows), chunk):
        row, item = tie_rows[start : start + chunk], tie_items[start : start + chunk]
        same = relevant.distances[row] == _distance(squared[row, item])[:, None]
        positions[row, item] += (same & (items[row] < item[:, None])).sum(1)
    # the own item's infinite distance puts it past every relevant item (position R
    # or, tied with the infinite padding, up to W), so it counts for no rank
    positions[relevant_rows, items[relevant_rows, relevant_columns]] = relevant_columns
    counts = torch.zeros(b, width + 1, dtype=torch.long, device=device)
    ones = torch.ones(1, 1, dtype=torch.long, device=device).expand(b, squared.shape[1])
    return counts.scatter_add_(1, positions, ones).cumsum(1)[:, :width]


def _rows_per_column(n_relevant: Tensor, width: int) -> list[int]:
    """For each k < width, how many rows have a (k+1)-th relevant item: a prefix, as R decreases."""
    columns = torch.arange(width, device=n_relevant.device)
    return (n_relevant[None, :] > columns[:, None]).sum(1).tolist()


def _metrics_from_ranks(ranks: Tensor, n_relevant: Tensor, recall_at: Sequence[int]) -> dict[str, Tensor]:
    """R@K, AP, AP@R and AP@10 of each query from its relevant items' ranks (ascending).

    Rows must come in order of decreasing ``n_relevant``; AP sums its terms
    k / r_k in rank order, one after the other.

    Shape:
        ranks: (B, W), n_relevant: (B,) -> each (B,)
    """
    b, width = ranks.shape
    device = ranks.device
    found = n_relevant > 0
    best = ranks[:, 0] if width else torch.zeros(b, dtype=torch.long, device=device)
    metrics = {f"R@{k}": (found & (best <= k)).double() for k in recall_at}
    # tensor / tensor: a Python number / tensor would multiply by a rounded reciprocal
    precision = torch.arange(1, width + 1, dtype=torch.float64, device=device)[None, :] / ranks.double()
    within_r = (ranks <= n_relevant[:, None]).double()
    within_depth = (ranks <= AP_DEPTH).double()
    ap = torch.zeros(b, dtype=torch.float64, device=device)
    ap_r = torch.zeros_like(ap)
    ap_depth = torch.zeros_like(ap)
    for k, n in enumerate(_rows_per_column(n_relevant, width)):
        ap[:n] += precision[:n, k]
        ap_r[:n] += precision[:n, k] * within_r[:n, k]
        ap_depth[:n] += precision[:n, k] * within_depth[:n, k]
    denominator = n_relevant.clamp_min(1).double()
    metrics["AP"] = ap / denominator
    metrics["AP@R"] = ap_r / denominator
    metrics[f"AP@{AP_DEPTH}"] = ap_depth / torch.full_like(ap_depth, AP_DEPTH)
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

    Exact search (``nearest_neighbors``: faiss on the CPU, torch on a GPU), cheap on big galleries; the
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
    nearest_labels = gallery_labels[nearest[:, 0].to(gallery_labels.device)]
    return (nearest_labels.to(query_labels.device) == query_labels).double().to(queries.device)


def nmi(
    embeddings: Tensor, labels: Tensor, n_clusters: int, seed: int, iterations: int = KMEANS_ITERATIONS
) -> float:
    """Normalised mutual information of faiss k-means clusters against the labels.

    faiss k-means (Lloyd iterations on float32, seeded initialisation, and a
    seeded subsample when N > 256 k, so the result is fixed by ``seed``); each
    item is assigned to its nearest centroid and the assignment compared with
    the labels by ``sklearn.metrics.normalized_mutual_info_score``. Each
    iteration costs one exhaustive search of the N items among k centroids:
    with k = 11,316 (SOP) that is most of NMI's time.

    Args:
        embeddings: Shape: (N, D)
        labels: Shape: (N,)
        n_clusters: k, usually the number of classes (at most N).
        seed: seed of the k-means.
        iterations: k-means iterations at most (faiss stops when the objective stops changing).

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
    kmeans = faiss.Kmeans(data.shape[1], n_clusters, niter=iterations, seed=seed, min_points_per_centroid=1)
    kmeans.train(data)
    _, assigned = kmeans.index.search(data, 1)
    return float(normalized_mutual_info_score(labels.cpu().numpy(), assigned[:, 0]))


def nmi_seeds(seed: int, n_seeds: int) -> list[int]:
    """The k-means seeds of NMI: ``n_seeds`` streams derived from ``seed``, each below 2^31 (faiss takes a C int)."""
    if n_seeds < 1:
        raise ValueError(f"NMI needs at least one k-means seed, got {n_seeds}")
    return [derive_seed(seed, k) % (1 << 31) for k in range(n_seeds)]


def nmi_over_seeds(embeddings: Tensor, labels: Tensor, n_clusters: int, seeds: Sequence[int]) -> tuple[float, float | None]:
    """Mean and sample standard deviation (ddof 1) of ``nmi`` over k-means runs with each of ``seeds``.

    One k-means run is a draw: on the same embeddings, runs that differ only
    by their seed differ by up to several NMI points, so one run's NMI is not
    the embeddings' NMI. The standard deviation is None for a single seed.

    Shape:
        embeddings: (N, D), labels: (N,)
    """
    values = np.array([nmi(embeddings, labels, n_clusters, seed) for seed in seeds])
    return float(values.mean()), float(values.std(ddof=1)) if len(values) > 1 else None


def retrieval_metrics(
    embeddings: Tensor,
    labels: Tensor,
    recall_at: Sequence[int],
    block_size: int,
    seed: int,
    n_nmi_seeds: int = 1,
) -> dict[str, float | None]:
    """Benign metrics of a test set against itself, in percent.

    Every item is a query, the gallery is the whole set and each query's own
    item is excluded by index. R@K, mAP, mAP@R and mAP@10 are means over the
    queries (see ``rank_metrics``); NMI uses k = number of distinct labels.

    Args:
        embeddings: Shape: (N, D)
        labels: Shape: (N,)
        recall_at: the K of each ``R@K``.
        block_size: queries ranked at once.
        seed: the seed the NMI k-means seeds derive from (``nmi_seeds``).
        n_nmi_seeds: k-means runs NMI is the mean of.

    Returns:
        ``{"R@K": ..., "mAP": ..., "mAP@R": ..., "mAP@10": ..., "NMI": ..., "NMI_std": ...}``,
        plain floats in 0..100 rounded to 4 decimals so that saved JSON is byte-stable
        (``NMI_std`` None for one seed).
    """
    own = torch.arange(embeddings.shape[0], device=embeddings.device)
    per_query = rank_metrics(embeddings, labels, embeddings, labels, own, recall_at, block_size)
    return summary_metrics(per_query, embeddings, labels, recall_at, seed, n_nmi_seeds)


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


#: per-query value -> the summary key of its mean over the queries
MEAN_NAMES = {"AP": "mAP", "AP@R": "mAP@R", f"AP@{AP_DEPTH}": f"mAP@{AP_DEPTH}"}


def query_means(per_query: dict[str, Tensor], recall_at: Sequence[int]) -> dict[str, np.ndarray]:
    """The per-query values the benign means are taken of, in %, keyed by the mean's name (``R@1``, ``mAP`` ...).

    Shape:
        each (Q,) -> each (Q,) float64
    """
    names = {f"R@{k}": f"R@{k}" for k in recall_at} | MEAN_NAMES
    return {shown: 100.0 * per_query[name].detach().cpu().double().numpy() for name, shown in names.items()}


def summary_metrics(
    per_query: dict[str, Tensor],
    embeddings: Tensor,
    labels: Tensor,
    recall_at: Sequence[int],
    seed: int,
    n_nmi_seeds: int = 1,
) -> dict[str, float | None]:
    """The summary of ``rank_metrics`` of every test item (in order) and NMI, in %, rounded to 4 decimals.

    What ``retrieval_metrics`` returns; the ``evaluate`` stage calls it on
    per-query values gathered from several processes. NMI is the mean over
    ``n_nmi_seeds`` k-means runs, ``NMI_std`` their sample standard deviation.
    """
    means = {f"R@{k}": per_query[f"R@{k}"].mean() for k in recall_at}
    means |= {shown: per_query[name].mean() for name, shown in MEAN_NAMES.items()}
    summary: dict[str, float | None] = {name: round(100.0 * value.item(), 4) for name, value in means.items()}
    n_classes = int(labels.unique().numel())
    mean, std = nmi_over_seeds(embeddings, labels, n_classes, nmi_seeds(seed, n_nmi_seeds))
    summary["NMI"] = round(100.0 * mean, 4)
    summary["NMI_std"] = None if std is None else round(100.0 * std, 4)
    return summary
