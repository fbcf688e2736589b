"""Benign evaluation of a model on the test split: the ``evaluate`` stage's metrics and the per-epoch training log's."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torch.utils.data import Dataset

from catride_core.models.embedding import embed
from catride_core.retrieval.collapse import collapse_diagnostics
from catride_core.retrieval.metrics import recall_at_1, retrieval_metrics


def benign_metrics(
    embeddings: Tensor,
    labels: Tensor,
    recall_at: Sequence[int],
    block_size: int,
    diagnostic_inverse_temperature: float,
    seed: int,
) -> dict[str, float]:
    """R@K, mAP, mAP@R and NMI (in %) of a test set ranked against itself, and its collapse diagnostics.

    Shape:
        embeddings: (N, D); labels: (N,)
    """
    metrics = retrieval_metrics(embeddings, labels, recall_at, block_size, seed)
    return metrics | collapse_diagnostics(embeddings, labels, diagnostic_inverse_temperature, seed)


def epoch_metrics(
    model: nn.Module,
    test_set: Dataset,
    batch_size: int,
    device: torch.device,
    diagnostic_inverse_temperature: float,
    seed: int,
    num_workers: int = 0,
) -> dict[str, float]:
    """What the training log records after each epoch: benign R@1 (%) of the test set and its collapse diagnostics."""
    embeddings = embed(model, test_set, batch_size, device, num_workers)
    labels = torch.as_tensor(test_set.labels)
    own = torch.arange(len(labels))
    r1 = float(recall_at_1(embeddings, labels, embeddings, labels, own).mean()) * 100
    return {"R@1": r1, **collapse_diagnostics(embeddings, labels, diagnostic_inverse_temperature, seed)}
