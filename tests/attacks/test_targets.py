import torch

from catride_core.attacks.targets import (
    nearest_other_label_targets,
    random_targets,
    sample_distinct,
    top_fraction_targets,
)
from catride_core.distances import pairwise_distances


def test_random_targets_are_distinct_and_never_the_attacked_item():
    queries = torch.arange(6).repeat(50)
    drawn = random_targets(6, queries, 5, torch.Generator().manual_seed(0))
    # 5 distinct items out of the 5 others: exactly every other item, in some order
    expected = torch.stack([torch.tensor([j for j in range(6) if j != i]) for i in queries.tolist()])
    assert torch.equal(drawn.sort(1).values, expected)
    one = random_targets(6, queries, 1, torch.Generator().manual_seed(0))[:, 0]
    assert (one != queries).all()
    assert set(one.tolist()) == set(range(6))
    rows = sample_distinct(2000, 10, 3, torch.Generator().manual_seed(0))
    assert all(len(set(row)) == 3 for row in rows.tolist())
    # uniform: each of 10 values in 30% of the rows, about 600 +- 3 sigma (~62)
    counts = torch.bincount(rows.flatten(), minlength=10)
    assert (counts - 600).abs().max() < 70


def test_minus_targets_come_from_the_top_one_percent():
    # N = 250 -> top-1% = int(2.5) = 2 nearest items, self excluded
    embeddings = torch.nn.functional.normalize(torch.randn(250, 3, generator=torch.Generator().manual_seed(0)), dim=1)
    queries = torch.arange(250)
    targets = top_fraction_targets(embeddings, queries, 1, torch.Generator().manual_seed(0))
    distances = pairwise_distances(embeddings.double(), embeddings.double())
    picked = set()
    for i in range(250):  # slow reference: the two nearest other items
        order = [j for j in distances[i].argsort().tolist() if j != i]
        assert targets[i, 0].item() in order[:2]
        picked.add(order.index(targets[i, 0].item()))
    assert picked == {0, 1}  # a random choice within the pool, not always the nearest


def test_gtm_targets_the_truly_nearest_other_label_item(on_circle):
    # slot: pixel (label): 0: 0.0 (0), 1: 0.9 (1), 2: 0.1 (0), 3: 0.3 (1). For query 0 the
    # other-label items are slots 1 and 3; slot 3 is nearer. The masked-subset bug takes the
    # argmin within [slot 1, slot 3], i.e. 1, as a gallery index: slot 1, the farthest.
    embeddings = on_circle([0.0, 0.9, 0.1, 0.3])
    labels = torch.tensor([0, 1, 0, 1])
    targets = nearest_other_label_targets(embeddings, labels, torch.arange(4))
    assert targets[0, 0].item() == 3
    # slot 1 (0.9) and slot 3 (0.3): of the label-0 items 0.0 and 0.1, 0.1 (slot 2) is nearer;
    # slot 2 (0.1): of the label-1 items 0.9 and 0.3, 0.3 (slot 3) is nearer
    assert targets[:, 0].tolist() == [3, 2, 3, 2]
