"""Seeded target selection for the ranking attacks (docs/method.md section 5).

Every function returns gallery indices. Random choices come from an explicit
CPU ``torch.Generator`` and depend only on the gallery size, the attacked
indices and the draw order, never on the model, so every model is attacked on
the same random targets. Choices "from the top-1%" or "the nearest" depend on
the clean gallery embeddings by definition.
"""

from __future__ import annotations

import torch
from torch import Tensor

from catride_core.distances import pairwise_distances
from catride_core.errors import DataError
from catride_core.retrieval.knn import nearest_neighbors


def top_fraction_size(n_gallery: int, fraction: float = 0.01) -> int:
    """int(fraction * N), at least 1: the size of the "top-1%" of a gallery of N items."""
    return max(1, int(fraction * n_gallery))


def sample_distinct(rows: int, population: int, count: int, generator: torch.Generator) -> Tensor:
    """``count`` distinct values of range(population) for each row, uniformly (Floyd's algorithm).

    Vectorised over rows: ``count`` draws of one random integer per row, so
    the cost does not grow with the population.

    Shape:
        returns (rows, count) int64 on the CPU
    """
    if not 0 <= count <= population:
        raise ValueError(f"cannot draw {count} distinct items from {population}")
    chosen = torch.empty(rows, 0, dtype=torch.long)
    for top in range(population - count, population):
        draw = torch.randint(0, top + 1, (rows,), generator=generator)
        taken = (chosen == draw[:, None]).any(1)
        chosen = torch.cat([chosen, torch.where(taken, top, draw)[:, None]], 1)
    return chosen


def random_targets(n_gallery: int, queries: Tensor, count: int, generator: torch.Generator) -> Tensor:
    """``count`` distinct random gallery items for each attacked item, never the item itself.

    Args:
        n_gallery: N.
        queries: gallery index of each attacked item. Shape: (Q,)
        count: targets per attacked item (at most N - 1).
        generator: CPU generator.

    Returns:
        gallery indices. Shape: (Q, count)
    """
    drawn = sample_distinct(len(queries), n_gallery - 1, count, generator).to(queries.device)
    # draw from the N - 1 other items: skip over the attacked item's own slot
    return drawn + (drawn >= queries[:, None]).long()


def top_fraction_targets(
    gallery: Tensor,
    queries: Tensor,
    count: int,
    generator: torch.Generator,
    block_size: int = 4096,
) -> Tensor:
    """``count`` distinct random items from each attacked item's top-1% (self excluded).

    The top-1% is the ``top_fraction_size(N)`` nearest gallery items to the
    attacked item's clean embedding, its own item excluded by index.

    Args:
        gallery: clean gallery embeddings. Shape: (N, D)
        queries: gallery index of each attacked item. Shape: (Q,)
        count: targets per attacked item (at most the top-1% size).
        generator: CPU generator.
        block_size: queries searched at once.

    Returns:
        gallery indices. Shape: (Q, count)
    """
    pool = top_fraction_size(gallery.shape[0])
    if count > pool:
        raise DataError(f"{count} targets asked from a top-1% of {pool} items (gallery of {gallery.shape[0]})")
    _, nearest = nearest_neighbors(gallery[queries], gallery, pool, exclude=queries, block_size=block_size)
    picks = sample_distinct(len(queries), pool, count, generator).to(nearest.device)
    return nearest.gather(1, picks)


def nearest_neighbor_targets(gallery: Tensor, queries: Tensor, block_size: int = 4096) -> Tensor:
    """Each attacked item's clean top-1 neighbour, its own item excluded by index.

    Shape:
        gallery: (N, D), queries: (Q,) -> (Q, 1)
    """
    _, nearest = nearest_neighbors(gallery[queries], gallery, 1, exclude=queries, block_size=block_size)
    return nearest


def nearest_other_label_targets(gallery: Tensor, labels: Tensor, queries: Tensor, block_size: int = 1024) -> Tensor:
    """The truly nearest gallery item whose label differs from the attacked item's.

    Same-label items (the item itself among them) are masked *in place* in the
    full distance row, so the argmin is a gallery index. (The reference code
    takes the argmin over the masked subset and uses it as a gallery index,
    which picks the wrong item.) Distances in float64, exact.

    Args:
        gallery: clean gallery embeddings. Shape: (N, D)
        labels: gallery labels. Shape: (N,)
        queries: gallery index of each attacked item. Shape: (Q,)
        block_size: queries handled at once.

    Returns:
        gallery indices. Shape: (Q, 1)
    """
    gallery64 = gallery.double()
    found = []
    for start in range(0, len(queries), block_size):
        block = queries[start : start + block_size]
        distances = pairwise_distances(gallery64[block], gallery64)
        same = labels[block][:, None] == labels[None, :]
        if bool(same.all(1).any()):
            raise DataError("an attacked item has no gallery item of another label")
        found.append(distances.masked_fill(same, torch.inf).argmin(1))
    if not found:
        return torch.zeros(0, 1, dtype=torch.long, device=gallery.device)
    return torch.cat(found)[:, None]


def reference_other_label_targets(gallery: Tensor, labels: Tensor, queries: Tensor, block_size: int = 1024) -> Tensor:
    """RobRank's GTM target: the argmin over the other-label items, taken as an index into the whole gallery.

    A compatibility rule, never the default (docs/method.md section 5.1): the
    reference code ranks only the items whose label differs from the attacked
    item's, and uses the position of the nearest of them *in that subset* as a
    gallery index. The item it names is nearly arbitrary, often of the
    attacked item's own label. Published GTM values were measured through it.

    Shape:
        gallery: (N, D), labels: (N,), queries: (Q,) -> (Q, 1) gallery indices
    """
    gallery64 = gallery.double()
    found = []
    for start in range(0, len(queries), block_size):
        block = queries[start : start + block_size]
        distances = pairwise_distances(gallery64[block], gallery64)
        for row, query in zip(distances, block, strict=True):
            other = labels != labels[query]
            if not bool(other.any()):
                raise DataError("an attacked item has no gallery item of another label")
            found.append(row[other].argmin())
    if not found:
        return torch.zeros(0, 1, dtype=torch.long, device=gallery.device)
    return torch.stack(found)[:, None]
