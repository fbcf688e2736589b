"""The attack runs behind the report's retrieval examples: a few test queries attacked with ES and CA+.

``attacked_examples`` runs the attacks with the attack stage's own runner and
measures the rankings before and after with ``retrieval.examples``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.utils.data import Dataset, Subset

from catride_core.attacks.base import AttackBudget
from catride_core.attacks.queries import spread_first
from catride_core.attacks.runner import run_attacks
from catride_core.models.embedding import embed
from catride_core.retrieval.examples import (
    CandidateRankings,
    Rankings,
    candidate_rankings,
    query_rankings,
)

#: the query attack of the ranking grid (ES: its ES:R is the robust R@1) and the candidate attack of the target lists
QUERY_ATTACK, CANDIDATE_ATTACK = "es", "ca_plus"


def gather_images(images: Dataset, indices: Tensor) -> Tensor:
    """The images of gallery items ``indices`` read from the test split. Shape: (...) -> (..., C, H, W)"""
    flat = [images[int(i)][0] for i in indices.reshape(-1)]
    return torch.stack(flat).reshape(*indices.shape, *flat[0].shape)


@dataclass(frozen=True)
class Examples:
    """The retrieval examples of one model, on a reordered test split whose first Q items are the example queries.

    Attributes:
        images: the reordered test split (gallery slot ``i`` is its item ``i``).
        labels: its classes. Shape: (N,)
        queries: the example queries' slots, 0 .. Q - 1. Shape: (Q,)
        query_adversarial: the queries perturbed by ``QUERY_ATTACK``. Shape: (Q, C, H, W)
        query_rankings: their top-k clean and perturbed.
        candidate_adversarial: the same items perturbed by ``CANDIDATE_ATTACK`` as candidates. Shape: (Q, C, H, W)
        targets: each candidate's (first) target query. Shape: (Q,)
        candidate_rankings: the target queries' top-k and the candidates' places, before and after.
    """

    images: Dataset
    labels: Tensor
    queries: Tensor
    query_adversarial: Tensor
    query_rankings: Rankings
    candidate_adversarial: Tensor
    targets: Tensor
    candidate_rankings: CandidateRankings


def attacked_examples(
    model: nn.Module, images: Dataset, labels: Tensor, budget: AttackBudget, seed: int, n_queries: int, k: int,
    num_workers: int = 0,
) -> Examples:
    """Attack ``n_queries`` test images spread over the split with ES (as queries) and CA+ (as candidates).

    The same runner, budget and seed as the attack stage; the split is
    reordered by ``queries.spread_first`` so that the examples come from all
    over it (the gallery stays the whole split).

    Args:
        model: images in [0, 1] -> unit-norm embeddings.
        images: the whole test split, a Dataset of (image, label) items.
        labels: its classes. Shape: (N,)
        budget: the attack stage's budget.
        seed: seed of the attacks' targets.
        n_queries: Q, example queries (at most N).
        k: results shown per list.
        num_workers: DataLoader workers reading the images.
    """
    order = spread_first(len(labels), n_queries)
    reordered, reordered_labels = Subset(images, order.tolist()), labels[order]
    results = run_attacks([QUERY_ATTACK, CANDIDATE_ATTACK], model, reordered, reordered_labels, budget, seed,
                          max_queries=n_queries, save_images=n_queries, num_workers=num_workers)
    device = next(model.parameters()).device
    gallery = embed(model, reordered, budget.batch_size, device, num_workers).cpu()
    queries = torch.arange(n_queries)
    query_images = results[QUERY_ATTACK].images
    candidate_images = results[CANDIDATE_ATTACK].images
    targets = torch.as_tensor(results[CANDIDATE_ATTACK].per_query["targets"][:, 0])
    return Examples(
        images=reordered,
        labels=reordered_labels,
        queries=queries,
        query_adversarial=query_images,
        query_rankings=query_rankings(gallery, reordered_labels, queries, embed(model, query_images, device=device).cpu(), k),
        candidate_adversarial=candidate_images,
        targets=targets,
        candidate_rankings=candidate_rankings(gallery, reordered_labels, queries,
                                              embed(model, candidate_images, device=device).cpu(), targets, k),
    )
