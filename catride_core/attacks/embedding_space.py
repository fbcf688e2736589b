"""The attacks that move a query's embedding itself: TMA and ES (docs/method.md section 5)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor

from catride_core.attacks.base import Gallery, RankingAttack, Terms, no_targets
from catride_core.attacks.prank import query_recall_at_1
from catride_core.attacks.targets import random_targets
from catride_core.distances import embedding_shift, paired_distances


@dataclass(frozen=True)
class TargetedMismatch(RankingAttack):
    """TMA: pull the query's embedding towards one random gallery embedding t.

    Tolias et al., "Targeted Mismatch Adversarial Attack: Query with a Flower to
    Retrieve the Tower", ICCV 2019; one of the ERS attacks of RobRank and of Zhou &
    Patel, "Enhancing Adversarial Robustness for Deep Metric Learning", CVPR 2022.

    Threat model: L_inf, ``eps`` in [0, 1] pixels around q; sign-PGD from q (no random start), last iterate.

    Target: one random gallery item, never q (seeded, independent of the
    model). Objective: 1 - cos(f(q'), t). Reported: cos(f(q'), t) (clean
    value: the cosine to a random item).

    Arguments:
        none.

    Shape:
        queries: (Q,) gallery slots -> targets: (Q, 1); embeddings: (B, D) -> scores: (B,)
    """

    name: ClassVar[str] = "tma"

    def select_targets(self, gallery: Gallery, queries: Tensor, generator: torch.Generator) -> Tensor:
        return random_targets(gallery.size, queries, 1, generator)

    def terms(self, gallery: Gallery, queries: Tensor, targets: Tensor) -> Terms:
        target = gallery.embeddings[targets[:, 0]]
        return lambda embeddings: 1.0 - F.cosine_similarity(embeddings, target)

    @torch.no_grad()
    def score(self, gallery: Gallery, queries: Tensor, targets: Tensor, embeddings: Tensor) -> dict[str, Tensor]:
        target = gallery.embeddings[targets[:, 0]].double()
        return {"TMA": F.cosine_similarity(embeddings.double(), target)}


@dataclass(frozen=True)
class EmbeddingShift(RankingAttack):
    """ES: move the query's embedding as far as possible from its clean embedding.

    Embedding shift, Zhou et al., "Adversarial Ranking Attack and Defense", ECCV
    2020 [arXiv:2002.11293]; one of the ERS attacks of RobRank and of Zhou & Patel,
    "Enhancing Adversarial Robustness for Deep Metric Learning", CVPR 2022.

    Threat model: L_inf, ``eps`` in [0, 1] pixels around q; sign-PGD from q (no random start), last iterate.

    Targets: none. Objective: -d(f(q'), f(q)) (``embedding_shift``, which has a
    gradient at the start). Reported: ES:D, the shift d(f(q'), f(q)) of the
    *returned* image (clean value 0), and ES:R, R@1 (%) of q' with q's own
    gallery slot excluded (clean value: benign R@1).

    Arguments:
        none.

    Shape:
        queries: (Q,) gallery slots -> targets: (Q, 0); embeddings: (B, D) -> scores: (B,) each
    """

    name: ClassVar[str] = "es"

    def select_targets(self, gallery: Gallery, queries: Tensor, generator: torch.Generator) -> Tensor:
        return no_targets(queries)

    def terms(self, gallery: Gallery, queries: Tensor, targets: Tensor) -> Terms:
        clean = gallery.embeddings[queries]
        return lambda embeddings: -embedding_shift(embeddings, clean)

    @torch.no_grad()
    def score(self, gallery: Gallery, queries: Tensor, targets: Tensor, embeddings: Tensor) -> dict[str, Tensor]:
        shift = paired_distances(embeddings.double(), gallery.embeddings[queries].double())
        return {"ES:D": shift, "ES:R": query_recall_at_1(gallery, queries, embeddings)}


@dataclass(frozen=True)
class ReferenceEmbeddingShift(EmbeddingShift):
    """ES:D:ref: ES:D as RobRank's code measures it, a compatibility attack for comparing with its published tables.

    The reference loop records the shift before its last step, so its ES:D is
    that of the iterate one step before the returned image: the shift of ES
    run for ``steps - 1`` steps (the path is the same, so this is exactly that
    iterate; docs/method.md section 5.1). Reported: ES:D:ref only (ES:R is
    measured on the last iterate there too). Never part of ERS; ``ERS:ref``
    substitutes it for ES:D.

    Shape:
        queries: (Q,) gallery slots -> targets: (Q, 0); embeddings: (B, D) -> scores: (B,)
    """

    name: ClassVar[str] = "es_ref"

    def pgd_steps(self, steps: int) -> int:
        return max(steps - 1, 0)

    @torch.no_grad()
    def score(self, gallery: Gallery, queries: Tensor, targets: Tensor, embeddings: Tensor) -> dict[str, Tensor]:
        return {"ES:D:ref": paired_distances(embeddings.double(), gallery.embeddings[queries].double())}
