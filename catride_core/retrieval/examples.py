"""What an attack does to a few rankings: the top-k lists before and after, for the retrieval examples.

The lists are pure functions of embeddings and labels (the query's own
gallery item excluded by index, as in every metric of the project);
``attacked_examples`` runs the attacks with the attack stage's own runner.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.utils.data import Dataset, Subset

from catride_core.attacks.base import AttackBudget
from catride_core.attacks.runner import run_attacks
from catride_core.models.embedding import embed
from catride_core.queries import spread_first
from catride_core.retrieval.knn import nearest_neighbors

#: the query attack of the ranking grid (ES: its ES:R is the robust R@1) and the candidate attack of the target lists
QUERY_ATTACK, CANDIDATE_ATTACK = "es", "ca_plus"


@dataclass(frozen=True)
class Rankings:
    """The top-k of each example query, before and after an attack.

    Attributes:
        before: gallery indices of each clean top-k. Shape: (Q, K)
        after: gallery indices of each top-k under attack. Shape: (Q, K)
        correct_before: whether each result of ``before`` shares its query's class. Shape: (Q, K)
        correct_after: the same for ``after``. Shape: (Q, K)
    """

    before: Tensor
    after: Tensor
    correct_before: Tensor
    correct_after: Tensor


def query_rankings(gallery: Tensor, labels: Tensor, queries: Tensor, adversarial: Tensor, k: int) -> Rankings:
    """The top-k of attacked queries (ES, TMA ...): clean query against the gallery, then the perturbed one.

    Args:
        gallery: clean embeddings of the test split; query ``i`` owns slot ``queries[i]``. Shape: (N, D)
        labels: their classes. Shape: (N,)
        queries: gallery slots of the attacked images. Shape: (Q,)
        adversarial: embeddings of the perturbed queries. Shape: (Q, D)
        k: results per list.
    """
    _, before = nearest_neighbors(gallery[queries], gallery, k, exclude=queries)
    _, after = nearest_neighbors(adversarial, gallery, k, exclude=queries)
    own = labels[queries][:, None]
    return Rankings(before, after, labels[before] == own, labels[after] == own)


@dataclass(frozen=True)
class CandidateRankings:
    """What CA+ / CA- does to each target query's list: its top-k and the candidate's place, before and after.

    Attributes:
        rankings: the target queries' top-k with the clean gallery, then with the
            candidate's slot holding its perturbed embedding (correct: of the target query's class).
        rank_before: 1-based place of the candidate in the target query's clean list. Shape: (Q,)
        rank_after: its place once perturbed. Shape: (Q,)
    """

    rankings: Rankings
    rank_before: Tensor
    rank_after: Tensor


def candidate_rankings(
    gallery: Tensor, labels: Tensor, candidates: Tensor, adversarial: Tensor, targets: Tensor, k: int
) -> CandidateRankings:
    """Each target query's list before and after its candidate is perturbed (one candidate moved at a time).

    Args:
        gallery: clean embeddings of the test split. Shape: (N, D)
        labels: their classes. Shape: (N,)
        candidates: gallery slots of the attacked candidates. Shape: (Q,)
        adversarial: embeddings of the perturbed candidates. Shape: (Q, D)
        targets: the gallery slot of one target query per candidate. Shape: (Q,)
        k: results per list.
    """
    before, after, rank_before, rank_after = [], [], [], []
    for candidate, moved, target in zip(candidates, adversarial, targets):
        perturbed = gallery.clone()
        perturbed[candidate] = moved
        for embeddings, lists, ranks in ((gallery, before, rank_before), (perturbed, after, rank_after)):
            _, found = nearest_neighbors(embeddings[target][None], embeddings, k, exclude=target[None])
            lists.append(found[0])
            distances = torch.linalg.vector_norm(embeddings - embeddings[target], dim=1)
            ahead = distances < distances[candidate]
            ahead[target] = False  # the query's own item is not in its list
            ranks.append(ahead.sum() + 1)
    before_t, after_t = torch.stack(before), torch.stack(after)
    own = labels[targets][:, None]
    rankings = Rankings(before_t, after_t, labels[before_t] == own, labels[after_t] == own)
    return CandidateRankings(rankings, torch.stack(rank_before), torch.stack(rank_after))


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
    model: nn.Module, images: Dataset, labels: Tensor, budget: AttackBudget, seed: int, n_queries: int, k: int
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
    """
    order = spread_first(len(labels), n_queries)
    reordered, reordered_labels = Subset(images, order.tolist()), labels[order]
    results = run_attacks([QUERY_ATTACK, CANDIDATE_ATTACK], model, reordered, reordered_labels, budget, seed,
                          max_queries=n_queries, save_images=n_queries)
    device = next(model.parameters()).device
    gallery = embed(model, reordered, budget.batch_size, device).cpu()
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
