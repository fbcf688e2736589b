"""The evaluate stage's metrics split in a per-query part and a summary, as several processes compute them."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from catride_core.data.prepared import TensorImageDataset
from catride_core.distributed import World
from catride_core.retrieval.collapse import collapse_diagnostics
from catride_core.retrieval.evaluation import benign_metrics, query_metrics
from catride_core.retrieval.metrics import retrieval_metrics, summary_metrics

RECALL_AT = (1, 2, 4)


def noisy_set(n=90, dim=6, classes=9, seed=0):
    generator = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % classes
    centres = torch.randn(classes, dim, generator=generator)
    return F.normalize(centres[labels] + 0.9 * torch.randn(n, dim, generator=generator), dim=1), labels


def test_per_query_part_and_summary_give_exactly_retrieval_metrics():
    embeddings, labels = noisy_set()
    per_query = query_metrics(embeddings, labels, RECALL_AT, block_size=16)
    assert summary_metrics(per_query, embeddings, labels, RECALL_AT, seed=3) == retrieval_metrics(
        embeddings, labels, RECALL_AT, 16, seed=3)


def test_query_shards_of_whole_blocks_concatenate_to_all_queries():
    embeddings, labels = noisy_set()
    whole = query_metrics(embeddings, labels, RECALL_AT, block_size=16)
    for size in (2, 3, 7):
        shards = [World(rank, size).shard(len(labels), 16) for rank in range(size)]
        parts = [query_metrics(embeddings, labels, RECALL_AT, 16, shard) for shard in shards]
        for name, values in whole.items():
            assert torch.equal(torch.cat([part[name] for part in parts]), values), (size, name)
    assert 0 < whole["AP"].mean() < 1  # not a trivial ranking


class Flatten(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(16, 6)

    def forward(self, images):
        return F.normalize(self.linear(images.flatten(1)), dim=1)


def test_benign_metrics_of_one_process_are_the_metrics_of_the_embedded_test_set():
    torch.manual_seed(0)
    model = Flatten()
    generator = torch.Generator().manual_seed(1)
    images = torch.randint(0, 256, (50, 1, 4, 4), dtype=torch.uint8, generator=generator)
    labels = torch.arange(50) % 5
    test_set = TensorImageDataset(images.numpy(), labels.numpy())
    found = benign_metrics(model, test_set, 8, torch.device("cpu"), RECALL_AT, 12, 10.0, 0, World(), 2)
    with torch.no_grad():
        embeddings = model(images.float() / 255)
    expected = retrieval_metrics(embeddings, labels, RECALL_AT, 12, 0, n_nmi_seeds=2)
    assert found.metrics == expected | collapse_diagnostics(embeddings, labels, 10.0, 0)
    # the per-query values the intervals resample: their means are the metrics (in %)
    assert list(found.per_query) == ["R@1", "R@2", "R@4", "mAP", "mAP@R", "mAP@10"]
    for name, values in found.per_query.items():
        assert values.shape == (50,) and abs(values.mean() - expected[name]) <= 1e-4
