import pytest
import torch

from catride_core.attacks.base import Gallery
from catride_core.attacks.prank import (
    competing_mask,
    count_ahead,
    hinge_means,
    own_item_mask,
    prank,
    query_ranks,
    query_recall_at_1,
)
from catride_core.attacks.targets import random_targets
from catride_core.distances import pairwise_distances


def _gallery(n: int = 30, seed: int = 0) -> Gallery:
    generator = torch.Generator().manual_seed(seed)
    embeddings = torch.nn.functional.normalize(torch.randn(n, 4, generator=generator), dim=1)
    return Gallery(embeddings, torch.randint(0, 3, (n,), generator=generator))


def test_own_item_mask_drops_exactly_each_rows_own_slot():
    assert own_item_mask(torch.tensor([2, 0]), 4).tolist() == [[True, True, False, True], [False, True, True, True]]


def test_count_ahead_and_prank_match_a_slow_loop():
    generator = torch.Generator().manual_seed(0)
    n = 12
    list_distances = torch.rand(20, n, generator=generator, dtype=torch.float64)
    owners = torch.randint(0, n, (20,), generator=generator)
    ranked = (owners + torch.randint(1, n, (20,), generator=generator)) % n  # never the owner
    item = torch.rand(20, generator=generator, dtype=torch.float64)
    competing = competing_mask(owners, ranked, n)
    pranks = prank(count_ahead(list_distances, item, competing), competing)
    for r in range(20):  # slow reference: the list is every item but the owner and the ranked one
        members = [j for j in range(n) if j not in (owners[r].item(), ranked[r].item())]
        ahead = sum(list_distances[r, j].item() < item[r].item() for j in members)
        assert competing[r].nonzero().flatten().tolist() == members
        # the ranked item is in its own list, so the list has len(members) + 1 = n - 1 entries
        assert pranks[r].item() == pytest.approx(100.0 * ahead / (n - 1))


def test_hinge_mean_averages_over_each_lists_members_then_over_the_lists():
    hinge = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0], [7.0, 8.0, 9.0]])
    competing = torch.tensor([[True, False, True], [False, False, True], [False, False, False]])
    # rows: (1 + 3) / 2 = 2, 6 / 1 = 6, and an empty list counts as 0: (2 + 6 + 0) / 3
    assert hinge_means(hinge, competing).mean().item() == pytest.approx(8.0 / 3.0)


def test_query_ranks_match_a_slow_loop():
    gallery = _gallery()
    queries = torch.tensor([3, 0, 17, 29])
    targets = random_targets(gallery.size, queries, 3, torch.Generator().manual_seed(1))
    perturbed = torch.nn.functional.normalize(torch.randn(4, 4, generator=torch.Generator().manual_seed(2)), dim=1)
    n_ahead, competing = query_ranks(gallery, queries, targets, perturbed)
    assert n_ahead.shape == (4, 3) and competing.shape == (4, 3, gallery.size)
    distances = pairwise_distances(perturbed.double(), gallery.embeddings.double())
    for b, q in enumerate(queries.tolist()):
        for k, t in enumerate(targets[b].tolist()):
            # q's list: the gallery without q's own item; items strictly nearer than t, t itself not counted
            others = [j for j in range(gallery.size) if j not in (q, t)]
            assert n_ahead[b, k].item() == sum(distances[b, j] < distances[b, t] for j in others)


def test_query_recall_at_1_excludes_the_querys_own_slot():
    gallery = _gallery()
    queries = torch.arange(gallery.size)
    # the clean embeddings themselves: without the exclusion every query would find itself (100 %)
    hits = query_recall_at_1(gallery, queries, gallery.embeddings)
    distances = pairwise_distances(gallery.embeddings.double(), gallery.embeddings.double())
    distances.fill_diagonal_(torch.inf)
    expected = 100.0 * (gallery.labels[distances.argmin(1)] == gallery.labels).double()
    assert torch.equal(hits, expected)
    assert 0.0 < hits.mean().item() < 100.0
