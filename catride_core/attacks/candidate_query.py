"""The candidate and query attacks: CA+, CA-, QA+, QA- and GTT (docs/method.md section 5).

Each moves one item up or down ranking lists; their objectives are hinges over
the other members of a list and their scores count the items ahead
(``catride_core.attacks.prank``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor

from catride_core.attacks.base import Gallery, RankingAttack, Terms
from catride_core.attacks.prank import (
    competing_mask,
    count_ahead,
    hinge_means,
    prank,
    query_competing_mask,
    query_ranks,
)
from catride_core.attacks.targets import (
    nearest_neighbor_targets,
    random_targets,
    top_fraction_size,
    top_fraction_targets,
)
from catride_core.distances import paired_distances, pairwise_distances

#: GTT counts a query as defended while its clean top-1 stays within this many places
GTT_RETAIN_AT = 4


@dataclass(frozen=True)
class CandidateAttack(RankingAttack):
    """CA+ / CA-: perturb a candidate c to raise (+) or lower (-) it in the lists of W queries.

    Zhou et al., "Adversarial Ranking Attack and Defense", ECCV 2020
    [arXiv:2002.11293]; "Adversarial Attack and Defense in Deep Ranking",
    T-PAMI 2024 [arXiv:2106.03614].

    Threat model: L_inf, ``eps`` in [0, 1] pixels around c; sign-PGD from c (no random start), last iterate.

    Targets: W distinct random gallery items, never c (CA+), or W distinct
    random items of c's top-1%, c excluded (CA-). Objective:
    mean_x [d(c', q) - d(x, q)]_+ (CA+) or [d(x, q) - d(c', q)]_+ (CA-) over the
    other members x of each target q's list, in which c' replaces c. Reported:
    prank (%) of c' in q's list, averaged over the W queries (clean value about
    50 for CA+, small for CA-).

    Arguments:
        raise_rank (bool): True for CA+, False for CA-.
        queries_per_candidate (int): W, target queries per attacked candidate. (Default: 1)

    Shape:
        queries: (Q,) gallery slots -> targets: (Q, W); embeddings: (B, D) -> scores: (B,)
    """

    raise_rank: bool
    queries_per_candidate: int = 1

    @property
    def name(self) -> str:  # type: ignore[override]
        return "ca_plus" if self.raise_rank else "ca_minus"

    @property
    def target_count(self) -> int:
        """W: the distinct targets drawn for each attacked item."""
        return self.queries_per_candidate

    def select_targets(self, gallery: Gallery, queries: Tensor, generator: torch.Generator) -> Tensor:
        return _plus_or_minus_targets(self.raise_rank, gallery, queries, self.queries_per_candidate, generator)

    def _lists(self, gallery: Gallery, queries: Tensor, targets: Tensor, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
        """Distances from each target query to the gallery, and the other members of its list.

        Shape:
            returns (B * W, N) and (B * W, N); row b * W + w is query w of candidate b
        """
        embeddings = gallery.embeddings.to(dtype)
        flat_targets = targets.reshape(-1)
        list_distances = pairwise_distances(embeddings[flat_targets], embeddings)
        candidates = queries.repeat_interleave(targets.shape[1])
        return list_distances, competing_mask(flat_targets, candidates, gallery.size)

    def terms(self, gallery: Gallery, queries: Tensor, targets: Tensor) -> Terms:
        with torch.no_grad():
            list_distances, competing = self._lists(gallery, queries, targets, gallery.embeddings.dtype)
        target_embeddings = gallery.embeddings[targets.reshape(-1)]
        per_candidate = targets.shape[1]
        sign = 1.0 if self.raise_rank else -1.0

        def loss(embeddings: Tensor) -> Tensor:
            candidate = paired_distances(embeddings.repeat_interleave(per_candidate, 0), target_embeddings)
            return hinge_means((sign * (candidate[:, None] - list_distances)).clamp_min(0.0), competing)

        return loss

    @torch.no_grad()
    def score(self, gallery: Gallery, queries: Tensor, targets: Tensor, embeddings: Tensor) -> dict[str, Tensor]:
        list_distances, competing = self._lists(gallery, queries, targets, torch.float64)
        candidate = paired_distances(
            embeddings.double().repeat_interleave(targets.shape[1], 0),
            gallery.embeddings.double()[targets.reshape(-1)],
        )
        pranks = prank(count_ahead(list_distances, candidate, competing), competing)
        return {self.scores[0]: pranks.view(targets.shape).mean(1)}


@dataclass(frozen=True)
class QueryAttack(RankingAttack):
    """QA+ / QA-: perturb a query q to raise (+) or lower (-) M candidates in its list.

    Zhou et al., "Adversarial Ranking Attack and Defense", ECCV 2020
    [arXiv:2002.11293]; "Adversarial Attack and Defense in Deep Ranking",
    T-PAMI 2024 [arXiv:2106.03614].

    Threat model: L_inf, ``eps`` in [0, 1] pixels around q; sign-PGD from q (no random start), last iterate.

    Targets: M distinct random gallery items, never q (QA+), or M distinct
    random items of q's top-1%, q excluded (QA-). Objective:
    mean_x [d(q', c) - d(q', x)]_+ (QA+) or [d(q', x) - d(q', c)]_+ (QA-) over
    the other members x of q's list. Reported: prank (%) of c in q''s list,
    averaged over the M candidates (clean value about 50 for QA+, small for QA-).

    Arguments:
        raise_rank (bool): True for QA+, False for QA-.
        candidates_per_query (int): M, target candidates per attacked query. (Default: 1)

    Shape:
        queries: (Q,) gallery slots -> targets: (Q, M); embeddings: (B, D) -> scores: (B,)
    """

    raise_rank: bool
    candidates_per_query: int = 1

    @property
    def name(self) -> str:  # type: ignore[override]
        return "qa_plus" if self.raise_rank else "qa_minus"

    @property
    def target_count(self) -> int:
        """M: the distinct targets drawn for each attacked item."""
        return self.candidates_per_query

    def select_targets(self, gallery: Gallery, queries: Tensor, generator: torch.Generator) -> Tensor:
        return _plus_or_minus_targets(self.raise_rank, gallery, queries, self.candidates_per_query, generator)

    def terms(self, gallery: Gallery, queries: Tensor, targets: Tensor) -> Terms:
        return _query_rank_terms(gallery, queries, targets, self.raise_rank)

    @torch.no_grad()
    def score(self, gallery: Gallery, queries: Tensor, targets: Tensor, embeddings: Tensor) -> dict[str, Tensor]:
        n_ahead, competing = query_ranks(gallery, queries, targets, embeddings)
        return {self.scores[0]: prank(n_ahead, competing).mean(1)}


@dataclass(frozen=True)
class GreedyTopTranslocation(RankingAttack):
    """GTT: push the query's clean top-1 neighbour down its list (QA- on that neighbour).

    Greedy top-1 translocation, one of the ERS attacks of RobRank and of Zhou &
    Patel, "Enhancing Adversarial Robustness for Deep Metric Learning", CVPR 2022.

    Threat model: L_inf, ``eps`` in [0, 1] pixels around q; sign-PGD from q (no random start), last iterate.

    Target: q's clean top-1 neighbour, q's own item excluded by index (no
    randomness). Objective: the QA- hinge of that neighbour. Reported: retain@4,
    100 when the clean top-1 is still among the first 4 of q''s list (fewer
    than 4 items strictly ahead of it), else 0 (clean value 100).

    Arguments:
        none.

    Shape:
        queries: (Q,) gallery slots -> targets: (Q, 1); embeddings: (B, D) -> scores: (B,)
    """

    name: ClassVar[str] = "gtt"

    def select_targets(self, gallery: Gallery, queries: Tensor, generator: torch.Generator) -> Tensor:
        return nearest_neighbor_targets(gallery.embeddings, queries, gallery.block_size)

    def terms(self, gallery: Gallery, queries: Tensor, targets: Tensor) -> Terms:
        return _query_rank_terms(gallery, queries, targets, raise_rank=False)

    @torch.no_grad()
    def score(self, gallery: Gallery, queries: Tensor, targets: Tensor, embeddings: Tensor) -> dict[str, Tensor]:
        n_ahead, _ = query_ranks(gallery, queries, targets, embeddings)
        return {"GTT": 100.0 * (n_ahead[:, 0] < GTT_RETAIN_AT).double()}


def target_pool(raise_rank: bool, n_gallery: int) -> int:
    """How many distinct targets a + attack (any item but the attacked one) or a - attack (the attacked item's
    top-1%) can draw for each attacked item of a gallery of ``n_gallery``: the most W or M can be."""
    return n_gallery - 1 if raise_rank else top_fraction_size(n_gallery)


def _plus_or_minus_targets(
    raise_rank: bool, gallery: Gallery, queries: Tensor, count: int, generator: torch.Generator
) -> Tensor:
    """Targets of a + attack (random items) or a - attack (from the top-1%). Shape: (Q,) -> (Q, count)"""
    if raise_rank:
        return random_targets(gallery.size, queries, count, generator)
    return top_fraction_targets(gallery.embeddings, queries, count, generator, gallery.block_size)


def _query_rank_terms(gallery: Gallery, queries: Tensor, targets: Tensor, raise_rank: bool) -> Terms:
    """QA+ (raise) / QA- (lower) hinge of every target in the perturbed query's list. Shape: (B, D) -> (B, K)"""
    competing = query_competing_mask(gallery, queries, targets)
    sign = 1.0 if raise_rank else -1.0

    def loss(embeddings: Tensor) -> Tensor:
        distances = pairwise_distances(embeddings, gallery.embeddings)
        candidate = distances.gather(1, targets)
        return hinge_means((sign * (candidate[:, :, None] - distances[:, None, :])).clamp_min(0.0), competing)

    return loss
