"""The attacks that break a query's top-1 by label: LTM and GTM (docs/method.md section 5)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor

from catride_core.attacks.base import Gallery, RankingAttack, Terms, no_targets
from catride_core.attacks.prank import own_item_mask, query_recall_at_1
from catride_core.attacks.targets import (
    nearest_other_label_targets,
    reference_other_label_targets,
)
from catride_core.distances import paired_distances, pairwise_distances


@dataclass(frozen=True)
class LearningToMisrank(RankingAttack):
    """LTM: make every other-label item nearer to the query than every same-label one.

    Learning-to-mis-rank, Wang et al., "Transferable, Controllable, and
    Inconspicuous Adversarial Attacks on Person Re-identification With Deep
    Mis-Ranking", CVPR 2020; one of the ERS attacks of RobRank and of Zhou & Patel,
    "Enhancing Adversarial Robustness for Deep Metric Learning", CVPR 2022.

    Threat model: L_inf, ``eps`` in [0, 1] pixels around q; sign-PGD from q (no random start), last iterate.

    Targets: none (the labels decide). Objective:
    [max_{x: y_x != y} d(q', x) - min_{x: y_x = y, x != q} d(q', x)]_+ ; the
    query's own clean embedding is not a positive (the reference code forgets
    to exclude it, so its positive term starts at 0). Reported: R@1 (%) of q',
    its own gallery slot excluded (clean value: benign R@1).

    Arguments:
        none.

    Shape:
        queries: (Q,) gallery slots -> targets: (Q, 0); embeddings: (B, D) -> scores: (B,)
    """

    name: ClassVar[str] = "ltm"

    def select_targets(self, gallery: Gallery, queries: Tensor, generator: torch.Generator) -> Tensor:
        return no_targets(queries)

    def positives(self, gallery: Gallery, queries: Tensor) -> Tensor:
        """Which gallery items count as each query's positives: its label's items, its own slot excluded. Shape: (Q, N)"""
        same = gallery.labels[queries][:, None] == gallery.labels[None, :]
        return same & own_item_mask(queries, gallery.size)

    def terms(self, gallery: Gallery, queries: Tensor, targets: Tensor) -> Terms:
        same = gallery.labels[queries][:, None] == gallery.labels[None, :]
        positive = self.positives(gallery, queries)

        def loss(embeddings: Tensor) -> Tensor:
            distances = pairwise_distances(embeddings, gallery.embeddings)
            farthest_negative = distances.masked_fill(same, -torch.inf).amax(1)
            nearest_positive = distances.masked_fill(~positive, torch.inf).amin(1)
            return (farthest_negative - nearest_positive).clamp_min(0.0)

        return loss

    @torch.no_grad()
    def score(self, gallery: Gallery, queries: Tensor, targets: Tensor, embeddings: Tensor) -> dict[str, Tensor]:
        return {"LTM": query_recall_at_1(gallery, queries, embeddings)}


@dataclass(frozen=True)
class ReferenceLearningToMisrank(LearningToMisrank):
    """LTM:ref: LTM as RobRank's code writes it, a compatibility attack for comparing with its published tables.

    The objective, budget and score are LTM's; only the positives differ: the
    query's own clean embedding is one of them, so the positive term starts at
    0 and the attack first pushes the query away from itself (docs/method.md
    section 5.1). Never part of ERS; ``ERS:ref`` substitutes it for LTM.

    Shape:
        queries: (Q,) gallery slots -> targets: (Q, 0); embeddings: (B, D) -> scores: (B,)
    """

    name: ClassVar[str] = "ltm_ref"

    def positives(self, gallery: Gallery, queries: Tensor) -> Tensor:
        """Its label's items, its own slot included. Shape: (Q, N)"""
        return gallery.labels[queries][:, None] == gallery.labels[None, :]

    @torch.no_grad()
    def score(self, gallery: Gallery, queries: Tensor, targets: Tensor, embeddings: Tensor) -> dict[str, Tensor]:
        return {"LTM:ref": query_recall_at_1(gallery, queries, embeddings)}


@dataclass(frozen=True)
class GreedyTopMisranking(RankingAttack):
    """GTM: pull the query onto u, the truly nearest gallery item of another label.

    Greedy top-1 misranking, one of the ERS attacks of RobRank and of Zhou & Patel,
    "Enhancing Adversarial Robustness for Deep Metric Learning", CVPR 2022.

    Threat model: L_inf, ``eps`` in [0, 1] pixels around q; sign-PGD from q (no random start), last iterate.

    Target: u, the nearest gallery item whose label differs from q's, found in
    the full distance row (the reference code indexes a masked subset and picks
    the wrong item; no randomness). Objective: d(f(q'), u). Reported: R@1 (%)
    of q', its own gallery slot excluded (clean value: benign R@1).

    Arguments:
        none.

    Shape:
        queries: (Q,) gallery slots -> targets: (Q, 1); embeddings: (B, D) -> scores: (B,)
    """

    name: ClassVar[str] = "gtm"

    def select_targets(self, gallery: Gallery, queries: Tensor, generator: torch.Generator) -> Tensor:
        return nearest_other_label_targets(gallery.embeddings, gallery.labels, queries, gallery.block_size)

    def terms(self, gallery: Gallery, queries: Tensor, targets: Tensor) -> Terms:
        target = gallery.embeddings[targets[:, 0]]
        return lambda embeddings: paired_distances(embeddings, target)

    @torch.no_grad()
    def score(self, gallery: Gallery, queries: Tensor, targets: Tensor, embeddings: Tensor) -> dict[str, Tensor]:
        return {"GTM": query_recall_at_1(gallery, queries, embeddings)}


@dataclass(frozen=True)
class ReferenceGreedyTopMisranking(GreedyTopMisranking):
    """GTM:ref: GTM with RobRank's target rule, a compatibility attack for comparing with its published tables.

    The objective, budget and score are GTM's; only the target differs: the
    reference code's argmin over the other-label items, used as an index into
    the whole gallery (``targets.reference_other_label_targets``, docs/method.md
    section 5.1). On Fashion-MNIST this target is often an item of the query's
    own label, and pulling the query onto it breaks far more top-1 results than
    the true GTM does. Never part of ERS; ``ERS:ref`` substitutes it for GTM.

    Shape:
        queries: (Q,) gallery slots -> targets: (Q, 1); embeddings: (B, D) -> scores: (B,)
    """

    name: ClassVar[str] = "gtm_ref"

    def select_targets(self, gallery: Gallery, queries: Tensor, generator: torch.Generator) -> Tensor:
        return reference_other_label_targets(gallery.embeddings, gallery.labels, queries, gallery.block_size)

    @torch.no_grad()
    def score(self, gallery: Gallery, queries: Tensor, targets: Tensor, embeddings: Tensor) -> dict[str, Tensor]:
        return {"GTM:ref": query_recall_at_1(gallery, queries, embeddings)}
