"""Retrieval metrics against a slow per-query loop, a full-sort reference and hand-worked examples."""

from __future__ import annotations

import math

import faiss
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from catride_core.distances import pairwise_distances
from catride_core.retrieval import metrics
from catride_core.retrieval.metrics import (
    KMEANS_ITERATIONS,
    nmi,
    nmi_over_seeds,
    nmi_seeds,
    rank_metrics,
    recall_at_1,
    retrieval_metrics,
)

RECALL_AT = (1, 2, 4, 8)


def metrics_from_positions(relevant_positions, recall_at):
    """The definitions, one query at a time: each query's relevant items' 1-based ranks, ascending."""
    out = {name: [] for name in [f"R@{k}" for k in recall_at] + ["AP", "AP@R", "AP@10"]}
    for positions in relevant_positions:
        n_relevant = len(positions)
        for k in recall_at:
            out[f"R@{k}"].append(float(n_relevant > 0 and positions[0] <= k))
        ap = ap_r = ap_10 = 0.0
        for hits, position in enumerate(positions, start=1):
            ap += hits / position
            if position <= n_relevant:
                ap_r += hits / position
            if position <= 10:
                ap_10 += hits / position
        out["AP"].append(ap / n_relevant if n_relevant else 0.0)
        out["AP@R"].append(ap_r / n_relevant if n_relevant else 0.0)
        # RobRank's "mAP@R": R fixed at 10, whatever the number of relevant items
        out["AP@10"].append(ap_10 / 10)
    return {name: torch.tensor(values, dtype=torch.float64) for name, values in out.items()}


def slow_rank_metrics(queries, query_labels, gallery, gallery_labels, exclude, recall_at):
    """One query at a time, in plain Python, straight from the definitions."""
    relevant_positions = []
    for i in range(len(queries)):
        q = queries[i].double()
        own = -1 if exclude is None else int(exclude[i])
        # direct difference formula, not the library's |x|^2 + |y|^2 - 2xy expansion
        distances = ((gallery.double() - q) ** 2).sum(1).sqrt().tolist()
        ranking = sorted((d, j) for j, d in enumerate(distances) if j != own)
        rel = [int(gallery_labels[j]) == int(query_labels[i]) for _, j in ranking]
        relevant_positions.append([position for position, hit in enumerate(rel, start=1) if hit])
    return metrics_from_positions(relevant_positions, recall_at)


def full_sort_reference(queries, query_labels, gallery, gallery_labels, exclude, recall_at):
    """The algorithm rank_metrics replaced: every query's whole ranking sorted.

    Library distances in float64, the own item moved to the end and made
    irrelevant, a stable argsort (ties by gallery index); then the sums of the
    definitions, term by term in rank order. The product
    is taken on a multiple of 8 query rows, as rank_metrics does, so that both
    rank the same float64 numbers.
    """
    n_queries = len(queries)
    padded = torch.zeros(-(-n_queries // 8) * 8, queries.shape[1], dtype=torch.float64)
    padded[:n_queries] = queries.double()
    distances = pairwise_distances(padded, gallery.double())[:n_queries]
    relevant = query_labels[:, None] == gallery_labels[None, :]
    if exclude is not None:
        rows = (exclude >= 0).nonzero().squeeze(1)
        distances[rows, exclude[rows]] = torch.inf
        relevant[rows, exclude[rows]] = False
    ranked = relevant.gather(1, distances.argsort(dim=1, stable=True))
    return metrics_from_positions([(row.nonzero().squeeze(1) + 1).tolist() for row in ranked], recall_at)


def assert_same(fast, slow):
    """Equal to the last bit: both sum the same terms in the same (rank) order."""
    assert fast.keys() == slow.keys()
    for name in slow:
        assert torch.equal(fast[name], slow[name]), (name, (fast[name] - slow[name]).abs().max())


def random_set(n, dim, n_classes, generator):
    """Unit embeddings with exact duplicates, some of them with a different label."""
    embeddings = F.normalize(torch.randn(n, dim, generator=generator), dim=1)
    labels = torch.randint(0, n_classes, (n,), generator=generator)
    copies = torch.randperm(n, generator=generator)[: n // 4]
    embeddings[copies] = embeddings[torch.randint(0, n, (len(copies),), generator=generator)]
    return embeddings, labels


def test_matches_slow_loop_on_random_data_with_duplicates():
    generator = torch.Generator().manual_seed(0)
    gallery, gallery_labels = random_set(60, 8, 4, generator)
    gallery_labels[17] = 9  # the only item of class 9: as a query it has nothing relevant
    # queries: gallery items (own index excluded) and outsiders (exclude -1)
    outsiders = F.normalize(torch.randn(10, 8, generator=generator), dim=1)
    queries = torch.cat([gallery[:40], outsiders])
    query_labels = torch.cat([gallery_labels[:40], torch.randint(0, 4, (10,), generator=generator)])
    query_labels[-1] = 5  # an outsider of a class absent from the gallery
    exclude = torch.cat([torch.arange(40), torch.full((10,), -1)])

    fast = rank_metrics(queries, query_labels, gallery, gallery_labels, exclude, RECALL_AT, block_size=7)
    slow = slow_rank_metrics(queries, query_labels, gallery, gallery_labels, exclude, RECALL_AT)
    assert_same(fast, slow)
    assert fast["AP"][17] == 0 and fast["AP@R"][17] == 0 and fast["AP"][-1] == 0
    # the data must exercise both outcomes, or the comparison proves little
    assert 0 < fast["R@1"].mean() < 1 and 0 < fast["AP"].mean() < 1


def test_matches_slow_loop_with_exact_ties_between_distinct_items():
    # small integer coordinates: every distance is the exact sqrt of an integer,
    # so many distinct items tie exactly and only the index decides their order
    generator = torch.Generator().manual_seed(1)
    gallery = torch.randint(-1, 2, (50, 3), generator=generator).float()
    gallery_labels = torch.randint(0, 3, (50,), generator=generator)
    exclude = torch.arange(50)
    exclude[::5] = -1  # some queries keep their own item

    fast = rank_metrics(gallery, gallery_labels, gallery, gallery_labels, exclude, RECALL_AT, block_size=16)
    slow = slow_rank_metrics(gallery, gallery_labels, gallery, gallery_labels, exclude, RECALL_AT)
    assert_same(fast, slow)


@pytest.fixture(params=["counting", "search"])
def ranking_path(request, monkeypatch):
    """Forces one of rank_metrics' two ways of counting the items ahead of each relevant one."""
    monkeypatch.setattr(metrics, "_MAX_MEAN_R_FOR_COUNTING", 10**9 if request.param == "counting" else 0)
    return request.param


def labelled_set(structure, generator):
    """200 items, many small classes (SOP-like) or three big ones (CUB-like), with ties.

    Half the items have integer coordinates (many distinct items at exactly the
    same distance), a quarter of all are exact duplicates of another item
    (often of another label), one item is alone in its class.
    """
    n = 200
    embeddings, labels = random_set(n, 4, 40 if structure == "sop" else 3, generator)
    embeddings[: n // 2] = torch.randint(-1, 2, (n // 2, 4), generator=generator).float()
    labels[7] = 99
    return embeddings, labels


@pytest.mark.parametrize("structure", ["sop", "cub"])
@pytest.mark.parametrize("with_exclusion", [True, False])
def test_equals_full_sort_reference_exactly(structure, with_exclusion, ranking_path):
    generator = torch.Generator().manual_seed(10)
    gallery, gallery_labels = labelled_set(structure, generator)
    # queries: 96 gallery items (own item excluded or not) and 8 outsiders, one of a label
    # absent from the gallery; K = 64 is larger than most R
    queries = torch.cat([gallery[:96], F.normalize(torch.randn(8, 4, generator=generator), dim=1)])
    query_labels = torch.cat([gallery_labels[:96], torch.tensor([0, 1, 2, 0, 1, 2, 0, 123])])
    exclude = torch.cat([torch.arange(96), torch.full((8,), -1)]) if with_exclusion else None
    recall_at = (1, 2, 4, 8, 64)

    expected = full_sort_reference(queries, query_labels, gallery, gallery_labels, exclude, recall_at)
    for block_size in (1, 7, 1000):
        out = rank_metrics(queries, query_labels, gallery, gallery_labels, exclude, recall_at, block_size)
        assert_same(out, expected)
    # R = 0: the outsider of an absent class, and item 7 (alone in its class) when excluded
    assert out["AP"][-1] == out["AP@R"][-1] == out["R@64"][-1] == 0
    assert (out["AP"][7] == 0) == with_exclusion
    # the data must leave room for both outcomes, or equality proves little
    assert 0 < out["R@1"].mean() < 1 and 0 < out["AP"].mean() < 1
    assert 0 < out["AP@R"].mean() < out["AP"].mean()


def test_index_breaks_exact_ties_between_relevant_and_other_items(ranking_path):
    # points on a line, query at the origin with label 0, gallery index: (x, label)
    #   0: (1, 1)  1: (1, 0)  2: (2, 0)  3: (2, 1)  4: (3, 0)  5: (3, 0)  6: (4, 1)
    # each tie goes to the lower index: ranking 0, 1, 2, 3, 4, 5, 6 -> relevant ranks 2, 3, 5, 6 (R = 4)
    #   AP   = (1/2 + 2/3 + 3/5 + 4/6) / 4
    #   AP@R = (1/2 + 2/3) / 4              (ranks 2 and 3 are <= R)
    # breaking ties the other way (relevant first) would give ranks 1, 2, 4, 5 and R@1 = 1
    xs = torch.tensor([1.0, 1.0, 2.0, 2.0, 3.0, 3.0, 4.0])
    gallery = torch.stack([xs, torch.zeros(7)], dim=1)
    gallery_labels = torch.tensor([1, 0, 0, 1, 0, 0, 1])

    out = rank_metrics(torch.zeros(1, 2), torch.tensor([0]), gallery, gallery_labels, None, (1, 2))

    assert out["R@1"].item() == 0.0 and out["R@2"].item() == 1.0
    assert out["AP"].item() == (1 / 2 + 2 / 3 + 3 / 5 + 4 / 6) / 4
    assert out["AP@R"].item() == (1 / 2 + 2 / 3) / 4


def test_equals_full_sort_reference_on_a_subsample_of_a_larger_gallery():
    # 2,000 queries of a 12,000-item gallery with SOP's structure (classes of ~5)
    # and duplicates, with the default path choice and block size
    generator = torch.Generator().manual_seed(11)
    gallery, gallery_labels = random_set(12_000, 32, 2_250, generator)
    chosen = torch.randperm(12_000, generator=generator)[:2_000]
    queries, query_labels = gallery[chosen], gallery_labels[chosen]

    expected = full_sort_reference(queries, query_labels, gallery, gallery_labels, chosen, RECALL_AT)
    out = rank_metrics(queries, query_labels, gallery, gallery_labels, chosen, RECALL_AT)
    assert_same(out, expected)
    assert 0 < out["R@8"].mean() < 1


def test_block_size_does_not_break_near_ties_differently():
    # b = a plus noise far below float32 resolution: each b equals its a or is one
    # float32 step away, so a query's distances to the two tie or nearly tie and the
    # last bit of the float64 product decides. A matrix product on fewer rows than a
    # full panel (a block of 1) rounds differently unless the rows are padded.
    generator = torch.Generator().manual_seed(13)
    queries = F.normalize(torch.randn(16, 16, generator=generator), dim=1)
    a = F.normalize(torch.randn(64, 16, generator=generator), dim=1)
    b = F.normalize(a + 1e-9 * torch.randn(64, 16, generator=generator), dim=1)
    gallery, gallery_labels = torch.cat([a, b]), torch.arange(2).repeat_interleave(64)
    query_labels = torch.zeros(16, dtype=torch.long)

    expected = full_sort_reference(queries, query_labels, gallery, gallery_labels, None, (1,))
    for block_size in (1, 3, 16):
        out = rank_metrics(queries, query_labels, gallery, gallery_labels, None, (1,), block_size)
        assert_same(out, expected)


def test_squared_bounds_hold_exactly_the_squared_distances_of_each_distance():
    # the gallery is counted on squared distances: s must round to t exactly when
    # lower <= s <= upper, and the floats just outside must round elsewhere
    generator = torch.Generator().manual_seed(14)
    squared = torch.cat([
        torch.tensor([-1e-17, 0.0, 5e-324, 1e-300, 1e-16, 2.0, 3.0, 4.0, 1e300], dtype=torch.float64),
        torch.arange(1.0, 200.0, dtype=torch.float64),
        torch.rand(2000, generator=generator, dtype=torch.float64) * 4,
    ])
    distances = metrics._distance(squared)
    lower, upper = metrics._squared_bounds(distances)
    below = torch.nextafter(lower, torch.tensor(-torch.inf, dtype=torch.float64))
    above = torch.nextafter(upper, torch.tensor(torch.inf, dtype=torch.float64))

    assert bool(((lower <= squared) & (squared <= upper)).all())
    assert torch.equal(metrics._distance(upper), distances)
    positive = distances > 0
    assert torch.equal(metrics._distance(lower[positive]), distances[positive])
    assert bool((metrics._distance(below[positive]) < distances[positive]).all())
    assert bool((metrics._distance(above) > distances).all())
    # a distance of 0 takes every negative squared distance with it
    assert bool((lower[~positive] == -torch.inf).all()) and int((~positive).sum()) == 2
    # sqrt(2) * sqrt(2) rounds above 2: starting there and not stepping would miss s = 2
    assert metrics._distance(torch.tensor(2.0, dtype=torch.float64)) ** 2 > 2


def test_hand_worked_example():
    # points on a line, query at the origin, gallery index: (x, label)
    #   0: (3, 0)  1: (-2, 1)  2: (0, 0) = the query's own item  3: (2, 0)  4: (1, 1)  5: (5, 0)  6: (4, 1)
    # own item 2 removed; items 1 and 3 tie at distance 2 and the lower index goes first:
    #   ranking 4, 1, 3, 0, 6, 5  ->  relevance 0, 0, 1, 1, 0, 1  (R = 3)
    #   AP   = (1/3 + 2/4 + 3/6) / 3 = 4/9   (precision at each relevant rank)
    #   AP@R = (1/3) / 3 = 1/9               (only rank 3 <= R is relevant)
    #   AP@10 = (1/3 + 2/4 + 3/6) / 10 = 2/15 (all six ranks are within 10; divided by 10, not R)
    #   R@1 = R@2 = 0, R@3 = R@10 = 1
    # a second query, label 7, has no relevant item: every metric 0
    xs = torch.tensor([3.0, -2.0, 0.0, 2.0, 1.0, 5.0, 4.0])
    gallery = torch.stack([xs, torch.zeros(7)], dim=1)
    gallery_labels = torch.tensor([0, 1, 0, 0, 1, 0, 1])
    queries = torch.zeros(2, 2)
    query_labels = torch.tensor([0, 7])
    exclude = torch.tensor([2, -1])

    out = rank_metrics(queries, query_labels, gallery, gallery_labels, exclude, (1, 2, 3, 10))

    expected = {
        "R@1": [0.0, 0.0],
        "R@2": [0.0, 0.0],
        "R@3": [1.0, 0.0],
        "R@10": [1.0, 0.0],
        "AP": [4 / 9, 0.0],
        "AP@R": [1 / 9, 0.0],
        "AP@10": [(1 / 3 + 2 / 4 + 3 / 6) / 10, 0.0],
    }
    assert_same(out, {name: torch.tensor(values, dtype=torch.float64) for name, values in expected.items()})


def test_own_item_goes_by_index_and_its_duplicate_stays():
    # items 0 and 1 are the same embedding with different labels. Query = item 1 (label 0):
    # by index, item 0 (label 1) stays at rank 1 -> R@1 = 0, then item 2 -> R@2 = 1,
    # R = 1, AP = 1/2, AP@R = 0. Dropping "rank 0" instead would drop item 0 (the lower
    # index wins the tie), keep the query itself on top and report R@1 = 1, AP = 1.
    gallery = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.8, 0.6], [0.0, 1.0]])
    labels = torch.tensor([1, 0, 0, 1])
    queries, query_labels = gallery[1:2], labels[1:2]

    out = rank_metrics(queries, query_labels, gallery, labels, torch.tensor([1]), (1, 2))

    assert out["R@1"].tolist() == [0.0] and out["R@2"].tolist() == [1.0]
    assert out["AP"].tolist() == [0.5] and out["AP@R"].tolist() == [0.0] and out["AP@10"].tolist() == [0.05]
    # query = item 0 (label 1): its duplicate item 1 (label 0) stays first, item 3 is third
    out = rank_metrics(gallery[:1], labels[:1], gallery, labels, torch.tensor([0]), (1, 2, 3))
    assert [out[f"R@{k}"].item() for k in (1, 2, 3)] == [0.0, 0.0, 1.0]
    assert math.isclose(out["AP"].item(), 1 / 3)


def test_blockwise_equals_one_block():
    generator = torch.Generator().manual_seed(2)
    embeddings, labels = random_set(90, 16, 5, generator)
    own = torch.arange(90)
    whole = rank_metrics(embeddings, labels, embeddings, labels, own, RECALL_AT, block_size=1000)
    for block_size in (1, 7, 32, 89):
        blocked = rank_metrics(embeddings, labels, embeddings, labels, own, RECALL_AT, block_size=block_size)
        for name in whole:
            assert torch.equal(blocked[name], whole[name]), (block_size, name)


def test_recall_at_1_agrees_with_rank_metrics():
    generator = torch.Generator().manual_seed(3)
    gallery, gallery_labels = random_set(120, 16, 6, generator)
    queries = torch.cat([gallery[:60], F.normalize(torch.randn(20, 16, generator=generator), dim=1)])
    query_labels = torch.cat([gallery_labels[:60], torch.randint(0, 6, (20,), generator=generator)])
    exclude = torch.cat([torch.arange(60), torch.full((20,), -1)])

    fast = recall_at_1(queries, query_labels, gallery, gallery_labels, exclude, block_size=16)
    ranked = rank_metrics(queries, query_labels, gallery, gallery_labels, exclude, (1,))["R@1"]
    assert torch.equal(fast, ranked)
    assert 0 < fast.mean() < 1


def clustered_set(generator, n_classes=4, per_class=40):
    centres = torch.eye(16)[:n_classes]
    labels = torch.arange(n_classes).repeat_interleave(per_class)
    embeddings = F.normalize(centres[labels] + 0.05 * torch.randn(len(labels), 16, generator=generator), dim=1)
    return embeddings, labels


def test_nmi_keeps_faiss_default_iterations():
    # KMEANS_ITERATIONS writes out the value NMI always had: faiss's default
    assert faiss.Kmeans(8, 2).cp.niter == KMEANS_ITERATIONS
    embeddings, labels = random_set(200, 8, 5, torch.Generator().manual_seed(12))
    default = nmi(embeddings, labels, 5, seed=3)
    assert nmi(embeddings, labels, 5, seed=3, iterations=KMEANS_ITERATIONS) == default
    # and the argument reaches faiss: one iteration clusters differently on unclustered data
    assert nmi(embeddings, labels, 5, seed=3, iterations=1) != default


def test_nmi_on_separated_clusters_is_one_and_deterministic():
    embeddings, labels = clustered_set(torch.Generator().manual_seed(4))
    score = nmi(embeddings, labels, n_clusters=4, seed=0)
    assert score == pytest.approx(1.0, abs=1e-9)
    assert nmi(embeddings, labels, n_clusters=4, seed=0) == score
    # labels unrelated to the clusters give a low score
    shuffled = labels[torch.randperm(len(labels), generator=torch.Generator().manual_seed(5))]
    assert nmi(embeddings, shuffled, n_clusters=4, seed=0) < 0.2


def test_nmi_same_seed_same_value_on_unclustered_data():
    generator = torch.Generator().manual_seed(6)
    embeddings, labels = random_set(200, 8, 5, generator)
    first = nmi(embeddings, labels, n_clusters=5, seed=7)
    assert nmi(embeddings, labels, n_clusters=5, seed=7) == first
    assert 0 <= first <= 1


def test_retrieval_metrics_keys_and_percent():
    embeddings, labels = clustered_set(torch.Generator().manual_seed(7))
    out = retrieval_metrics(embeddings, labels, recall_at=(1, 2, 4), block_size=50, seed=0)
    assert list(out) == ["R@1", "R@2", "R@4", "mAP", "mAP@R", "mAP@10", "NMI", "NMI_std"]
    assert out["NMI_std"] is None  # one k-means seed: no spread
    out.pop("NMI_std")
    assert all(type(value) is float for value in out.values())
    # separated clusters: perfect retrieval and clustering, reported as 100 not 1
    assert out == pytest.approx({name: 100.0 for name in out}, abs=1e-9)
    # 3 items per cluster: 2 relevant, both first, so AP@10 = (1/1 + 2/2) / 10 = 20 % while mAP@R = 100 %
    embeddings, labels = clustered_set(torch.Generator().manual_seed(7), n_classes=8, per_class=3)
    out = retrieval_metrics(embeddings, labels, recall_at=(1,), block_size=50, seed=0)
    assert out["mAP@10"] == pytest.approx(20.0, abs=1e-9) and out["mAP@R"] == pytest.approx(100.0, abs=1e-9)

    generator = torch.Generator().manual_seed(8)
    embeddings, labels = random_set(80, 8, 4, generator)
    out = retrieval_metrics(embeddings, labels, recall_at=(1, 2), block_size=30, seed=0)
    per_query = rank_metrics(embeddings, labels, embeddings, labels, torch.arange(80), (1, 2))
    assert out["R@1"] == round(100 * per_query["R@1"].mean().item(), 4)
    assert out["mAP"] == round(100 * per_query["AP"].mean().item(), 4)
    assert out["mAP@R"] == round(100 * per_query["AP@R"].mean().item(), 4)
    assert out["mAP@10"] == round(100 * per_query["AP@10"].mean().item(), 4)
    assert all(round(value, 4) == value for value in out.values() if value is not None)
    assert 0 < out["mAP"] < 100


def test_rejects_bad_inputs():
    embeddings = torch.eye(3)
    labels = torch.tensor([0, 1, 0])
    with pytest.raises(ValueError, match="exclude"):
        rank_metrics(embeddings, labels, embeddings, labels, torch.tensor([0, 1, 3]), (1,))
    embeddings[0, 0] = torch.nan
    with pytest.raises(ValueError, match="non-finite"):
        rank_metrics(embeddings, labels, embeddings, labels, None, (1,))


def test_near_duplicates_keep_their_order():
    # an item 1e-4 from the query (same label) must rank before one 3e-4 away (other
    # label); in float32 the |x|^2 + |y|^2 - 2xy expansion loses squared distances
    # of 1e-8 in its rounding (~1e-7) and would put the lower index first
    generator = torch.Generator().manual_seed(9)
    queries = F.normalize(torch.randn(20, 64, generator=generator), dim=1)
    far = F.normalize(queries + 3e-4 * F.normalize(torch.randn(20, 64, generator=generator), dim=1), dim=1)
    near = F.normalize(queries + 1e-4 * F.normalize(torch.randn(20, 64, generator=generator), dim=1), dim=1)
    gallery = torch.cat([far, near])
    gallery_labels = torch.cat([torch.ones(20), torch.zeros(20)]).long()
    query_labels = torch.zeros(20).long()

    out = rank_metrics(queries, query_labels, gallery, gallery_labels, None, (1,))
    assert out["R@1"].tolist() == [1.0] * 20


def robrank_ap_at_10(distances, labels):
    """RobRank's "mAP@R" of every item against the rest, written as its validation computes it (rs=[10]).

    Each row sorted, the nearest item (the query itself) skipped, the next 10 kept:
    mask = relevance, AP = sum(cumsum(mask) / rank * mask) / 10. Distinct distances, so no tie is at stake.
    """
    ranked = np.argsort(distances, axis=1)[:, 1:11]
    mask = (labels[ranked] == labels[:, None]).astype(float)
    return (np.cumsum(mask, axis=1) / np.arange(1, 11) * mask).sum(axis=1) / 10


def test_ap_at_10_is_robranks_map_at_r_with_r_fixed_at_10():
    generator = torch.Generator().manual_seed(11)
    embeddings = F.normalize(torch.randn(120, 6, generator=generator), dim=1)
    labels = torch.randint(0, 4, (120,), generator=generator)  # about 30 relevant items per query, R != 10
    out = rank_metrics(embeddings, labels, embeddings, labels, torch.arange(120), (1,))
    distances = pairwise_distances(embeddings.double(), embeddings.double()).numpy()
    np.fill_diagonal(distances, -1.0)  # the query first, as RobRank assumes, and skipped
    expected = robrank_ap_at_10(distances, labels.numpy())
    assert np.allclose(out["AP@10"].numpy(), expected, rtol=0, atol=1e-12)
    # and it is not Musgrave's mAP@R, which divides by R (about 30 here)
    assert not np.allclose(out["AP@10"].numpy(), out["AP@R"].numpy())


def test_nmi_seeds_are_derived_from_the_base_seed_and_fit_a_c_int():
    seeds = nmi_seeds(0, 5)
    assert len(set(seeds)) == 5 and all(0 <= s < 2**31 for s in seeds)
    assert nmi_seeds(0, 5) == seeds and nmi_seeds(1, 5) != seeds and nmi_seeds(0, 2) == seeds[:2]
    with pytest.raises(ValueError, match="at least one k-means seed"):
        nmi_seeds(0, 0)


def test_nmi_over_seeds_is_the_mean_and_sample_std_of_one_run_per_seed():
    generator = torch.Generator().manual_seed(12)
    embeddings, labels = random_set(200, 8, 6, generator)
    seeds = [3, 5, 8]
    runs = [nmi(embeddings, labels, 6, seed) for seed in seeds]
    mean, std = nmi_over_seeds(embeddings, labels, 6, seeds)
    # the slow way: mean and sample variance (n - 1) by hand
    expected_mean = sum(runs) / 3
    expected_std = math.sqrt(sum((r - expected_mean) ** 2 for r in runs) / 2)
    assert mean == pytest.approx(expected_mean, abs=1e-12) and std == pytest.approx(expected_std, abs=1e-12)
    assert std > 0  # unclustered data: k-means runs differ by seed
    assert nmi_over_seeds(embeddings, labels, 6, [3]) == (runs[0], None)
    out = retrieval_metrics(embeddings, labels, (1,), 50, seed=0, n_nmi_seeds=3)
    mean, std = nmi_over_seeds(embeddings, labels, 6, nmi_seeds(0, 3))
    assert (out["NMI"], out["NMI_std"]) == (round(100 * mean, 4), round(100 * std, 4))
