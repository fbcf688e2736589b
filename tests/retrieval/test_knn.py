"""Exact faiss kNN against a brute-force torch.cdist + stable sort reference."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from catride_core.retrieval.knn import nearest_neighbors


def brute_force(queries, gallery, k, exclude):
    """Stable sort of exact float64 distances: ties go to the lower gallery index."""
    distances = torch.cdist(queries.double(), gallery.double())
    if exclude is not None:
        rows = (exclude >= 0).nonzero().squeeze(1)
        distances[rows, exclude[rows]] = torch.inf
    ordered, order = distances.sort(dim=1, stable=True)
    return ordered[:, :k].float(), order[:, :k]


def data_with_duplicates(generator):
    gallery = F.normalize(torch.randn(150, 16, generator=generator), dim=1)
    gallery[100:130] = gallery[:30]  # exact duplicates, higher index
    # queries: gallery items (own index excluded, its duplicate must stay) and outsiders
    queries = torch.cat([gallery[:50], gallery[100:110], F.normalize(torch.randn(15, 16, generator=generator), dim=1)])
    exclude = torch.cat([torch.arange(50), torch.arange(100, 110), torch.full((15,), -1)])
    return queries, gallery, exclude


# faiss searches blocks of fewer than 20 queries directly and larger ones with BLAS
@pytest.mark.parametrize("block_size", [16, 64])
@pytest.mark.parametrize("use_exclude", [True, False])
def test_matches_brute_force_with_duplicates_and_small_blocks(use_exclude, block_size):
    queries, gallery, exclude = data_with_duplicates(torch.Generator().manual_seed(0))
    exclude = exclude if use_exclude else None

    distances, indices = nearest_neighbors(queries, gallery, k=5, exclude=exclude, block_size=block_size)

    expected_distances, expected_indices = brute_force(queries, gallery, 5, exclude)
    assert torch.equal(indices, expected_indices)
    # faiss works in float32: sqrt of a rounded squared distance near 0 is ~1e-3
    torch.testing.assert_close(distances, expected_distances, rtol=0, atol=2e-3)
    if use_exclude:
        assert not (indices == exclude[:, None]).any()
        # query 0's duplicate (item 100) stays and comes first; query 100's is item 0
        assert indices[0, 0] == 100 and indices[50, 0] == 0
    else:
        # its own item ties with its duplicate; the lower index wins
        assert indices[0, 0] == 0 and indices[50, 0] == 0


def test_excluded_item_outside_the_top_k_drops_the_last():
    # exclude points at an item far down the list: the k nearest come back unchanged
    queries, gallery, _ = data_with_duplicates(torch.Generator().manual_seed(1))
    _, reference = brute_force(queries, gallery, gallery.shape[0], None)
    far_item = reference[:, -1]

    _, indices = nearest_neighbors(queries, gallery, k=4, exclude=far_item, block_size=7)

    assert torch.equal(indices, reference[:, :4])


def test_rejects_k_beyond_the_gallery():
    gallery = torch.eye(3)
    with pytest.raises(ValueError):
        nearest_neighbors(gallery, gallery, k=3, exclude=torch.arange(3))


@pytest.mark.parametrize("use_exclude", [True, False])
def test_the_gpu_search_gives_the_faiss_results_with_duplicates(use_exclude):
    # the torch search nearest_neighbors runs for a gallery on a GPU, run here on the CPU
    from catride_core.retrieval.knn import _search_on_device

    queries, gallery, exclude = data_with_duplicates(torch.Generator().manual_seed(0))
    exclude = exclude if use_exclude else None
    distances, indices = _search_on_device(queries, gallery, 5, exclude, block_size=16)
    expected_distances, expected_indices = brute_force(queries, gallery, 5, exclude)
    assert torch.equal(indices, expected_indices)  # ties to the lower index, the own item dropped by index
    torch.testing.assert_close(distances, expected_distances, rtol=0, atol=2e-3)
    assert torch.equal(indices, nearest_neighbors(queries, gallery, 5, exclude=exclude, block_size=16)[1])
