"""What an attack did to a few rankings: the top-k lists before and after, for the retrieval examples.

Pure functions of embeddings and labels (the query's own gallery item excluded
by index, as in every metric of the project); the runs that produce the
perturbed embeddings are ``attacks.examples``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from catride_core.retrieval.knn import nearest_neighbors


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
