"""Benign evaluation of a model on the test split: the ``evaluate`` stage's metrics and the per-epoch training log's."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.data import Dataset

from catride_core.models.embedding import embed
from catride_core.retrieval.collapse import collapse_diagnostics
from catride_core.retrieval.metrics import (
    query_means,
    rank_metrics,
    recall_at_1,
    summary_metrics,
)

if TYPE_CHECKING:
    # only the stages that run under torchrun pass a World; this module does not need it otherwise
    from catride_core.distributed import World


@dataclass(frozen=True)
class BenignEvaluation:
    """What ``benign_metrics`` finds on the first process.

    Attributes:
        metrics: R@K, mAP, mAP@R, mAP@10, NMI, NMI_std (in %) and the collapse diagnostics.
        per_query: each mean's per-query values in % (``metrics.query_means``), in test order,
            for the bootstrap intervals of the means.
    """

    metrics: dict[str, float | None]
    per_query: dict[str, np.ndarray]


def benign_metrics(
    model: nn.Module,
    test_set: Dataset,
    batch_size: int,
    device: torch.device,
    recall_at: Sequence[int],
    block_size: int,
    diagnostic_inverse_temperature: float,
    seed: int,
    world: World,
    n_nmi_seeds: int,
    num_workers: int = 0,
) -> BenignEvaluation | None:
    """R@K, mAP, mAP@R, mAP@10 and NMI (in %) of a test set ranked against itself, and its collapse diagnostics.

    The test set is embedded ``batch_size`` images at a time and ranked
    ``block_size`` queries at a time. With several processes each embeds its
    shard of whole batches and ranks its shard of whole blocks against the
    gathered gallery; the first process gathers the per-query values and
    computes the means, NMI (over ``n_nmi_seeds`` k-means runs) and the
    diagnostics on all embeddings, so the result is that of one process.
    ``num_workers`` DataLoader workers read the images.

    Returns:
        the metrics and per-query values on the first process (``world.is_main``), None on the others.
    """
    embeddings = world.embed(model, test_set, batch_size, device, num_workers)
    labels = torch.as_tensor(test_set.labels)
    queries = world.shard(len(labels), block_size)
    per_query = {name: world.gather(values)
                 for name, values in query_metrics(embeddings, labels, recall_at, block_size, queries).items()}
    if not world.is_main:
        return None
    metrics = summary_metrics(per_query, embeddings, labels, recall_at, seed, n_nmi_seeds)
    metrics |= collapse_diagnostics(embeddings, labels, diagnostic_inverse_temperature, seed)
    return BenignEvaluation(metrics, query_means(per_query, recall_at))


def query_metrics(
    embeddings: Tensor, labels: Tensor, recall_at: Sequence[int], block_size: int, queries: range | None = None
) -> dict[str, Tensor]:
    """Per-query R@K, AP, AP@R and AP@10 of the test items ``queries`` (all by default) against the whole test set.

    The per-query part of ``metrics.retrieval_metrics``: each query's own item
    is excluded by index (``metrics.rank_metrics``).

    Shape:
        embeddings: (N, D); labels: (N,) -> each (len(queries),) float64
    """
    queries = range(len(labels)) if queries is None else queries
    own = torch.arange(queries.start, queries.stop, device=embeddings.device)
    rows = slice(queries.start, queries.stop)
    return rank_metrics(embeddings[rows], labels[rows], embeddings, labels, own, recall_at, block_size)


def epoch_metrics(
    model: nn.Module,
    test_set: Dataset,
    batch_size: int,
    device: torch.device,
    diagnostic_inverse_temperature: float,
    seed: int,
    num_workers: int = 0,
    world: World | None = None,
) -> dict[str, float]:
    """What the training log records after each epoch: benign R@1 (%) of the test set and its collapse diagnostics.

    Under torchrun (``world``) each process embeds its shard of the test set and every process computes the
    metrics of the gathered embeddings, the same on every process.
    """
    if world is None or world.size == 1:
        embeddings = embed(model, test_set, batch_size, device, num_workers)
    else:
        embeddings = world.embed(model, test_set, batch_size, device, num_workers)
    labels = torch.as_tensor(test_set.labels)
    own = torch.arange(len(labels))
    r1 = float(recall_at_1(embeddings, labels, embeddings, labels, own).mean()) * 100
    return {"R@1": r1, **collapse_diagnostics(embeddings, labels, diagnostic_inverse_temperature, seed)}
