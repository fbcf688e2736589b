"""Exact nearest-neighbour search, blockwise over the queries: faiss on the CPU, torch on a GPU.

On a GPU the gallery stays on the device (a faiss-cpu search would copy it to
the host at every call, which the attacks make twice per batch): distances and
the ranking are computed there, in float32 or float64 as the inputs are, ties
going to the lower gallery index as faiss's do.
"""

from __future__ import annotations

import faiss
import numpy as np
import torch
from torch import Tensor

from catride_core.distances import pairwise_distances


def nearest_neighbors(
    queries: Tensor,
    gallery: Tensor,
    k: int,
    exclude: Tensor | None = None,
    block_size: int = 4096,
) -> tuple[Tensor, Tensor]:
    """The ``k`` gallery items nearest to each query, exact (faiss ``IndexFlatL2`` on the CPU; torch on a GPU).

    The query's own gallery item is removed *by index* (``exclude[i]``), never
    by dropping rank 0, which would go wrong on duplicates and ties. Queries are
    searched ``block_size`` at a time so memory stays bounded on big galleries.

    Args:
        queries: Shape: (Q, D)
        gallery: Shape: (G, D)
        k: neighbours per query (at most G, or G - 1 with ``exclude``).
        exclude: gallery index to drop from each query's list, -1 for none. Shape: (Q,)
        block_size: queries searched at once.

    Returns:
        Euclidean distances (ascending) and gallery indices. Shape: 2 x (Q, k)
    """
    n_gallery = gallery.shape[0]
    extra = 0 if exclude is None else 1
    if not 1 <= k <= n_gallery - extra:
        raise ValueError(f"k = {k} neighbours asked of a gallery of {n_gallery} items")
    if gallery.device.type != "cpu":
        return _search_on_device(queries, gallery, k, exclude, block_size)
    index = faiss.IndexFlatL2(gallery.shape[1])
    index.add(np.ascontiguousarray(gallery.detach().cpu().float().numpy()))
    query_array = np.ascontiguousarray(queries.detach().cpu().float().numpy())
    all_distances, all_indices = [], []
    for start in range(0, len(query_array), block_size):
        block = query_array[start : start + block_size]
        squared, found = index.search(block, k + extra)
        squared, found = torch.from_numpy(squared), torch.from_numpy(found)
        if exclude is not None:
            own = exclude[start : start + block_size].cpu()[:, None]
            hit = found == own
            # drop the excluded item where it was found, otherwise the last (k+1-th) one
            keep = ~hit
            keep[:, -1] &= hit.any(1)
            squared = squared[keep].view(len(block), k)
            found = found[keep].view(len(block), k)
        all_distances.append(squared.clamp_min(0.0).sqrt())
        all_indices.append(found)
    distances = torch.cat(all_distances).to(queries.device)
    indices = torch.cat(all_indices).to(queries.device)
    return distances, indices


def _search_on_device(
    queries: Tensor, gallery: Tensor, k: int, exclude: Tensor | None, block_size: int
) -> tuple[Tensor, Tensor]:
    """``nearest_neighbors`` where the gallery lives: blockwise distances, the own item masked, a stable sort."""
    gallery = gallery.detach()
    all_distances, all_indices = [], []
    for start in range(0, len(queries), block_size):
        distances = pairwise_distances(queries[start : start + block_size].detach(), gallery)
        if exclude is not None:
            own = exclude[start : start + block_size].to(gallery.device)
            rows = torch.arange(len(own), device=gallery.device)[own >= 0]
            distances[rows, own[own >= 0]] = torch.inf
        # a stable sort, not topk: ties go to the lower gallery index, as on the CPU
        ordered, order = distances.sort(dim=1, stable=True)
        all_distances.append(ordered[:, :k])
        all_indices.append(order[:, :k])
    return torch.cat(all_distances).to(queries.device), torch.cat(all_indices).to(queries.device)
