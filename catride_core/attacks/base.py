"""What every ranking attack shares: the gallery, the budget and the attack interface (docs/method.md section 5).

An attack is a small frozen object with three parts:

- ``select_targets``: seeded gallery indices (random ones never the attacked
  item itself and independent of the model; "top-1%" and "nearest" ones from
  the model's clean embeddings, by definition);
- ``terms``: a closure over the targets, embeddings of the perturbed images
  -> each image's loss terms (one per image, or one per target of it); the
  ``objective`` sign-PGD minimises is their mean, and the adaptive engine
  (``attacks.apgd``) minimises each image's mean of its own (``losses``);
- ``score``: the reported per-query values, computed the same way on the clean
  embeddings (the "clean value", same targets) and on the adversarial ones.

The attacked image ``i`` owns gallery slot ``i``; the runner
(``catride_core.attacks.runner``) does the rest.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor

from catride_core.names import ATTACK_SCORES

#: embeddings of the perturbed images -> the scalar loss PGD minimises. Shape: (B, D) -> ()
Objective = Callable[[Tensor], Tensor]
#: embeddings of the perturbed images -> each image's loss terms, rows in image order. Shape: (B, D) -> (B * K,) or (B, K)
Terms = Callable[[Tensor], Tensor]


@dataclass(frozen=True)
class Gallery:
    """The clean test set the attacks rank against.

    Attributes:
        embeddings: clean embeddings of every test image. Shape: (N, D)
        labels: their classes. Shape: (N,)
        block_size: queries handled at once by the exact searches.
    """

    embeddings: Tensor
    labels: Tensor
    block_size: int = 1024

    @property
    def size(self) -> int:
        return self.embeddings.shape[0]


@dataclass(frozen=True)
class AttackBudget:
    """PGD budget and target counts of an attack run.

    RobRank's evaluation budget: eps = 77/255 (28 px) or 8/255 (224 px),
    step_size = 3/255, steps = 32, no random start.

    Attributes:
        eps: L_inf radius in [0, 1] pixel units.
        step_size: sign-PGD step.
        steps: PGD iterations.
        random_start: start from a uniform point of the ball (seeded).
        batch_size: images attacked (and embedded) at once.
        candidates_per_query: M, target candidates per attacked query in QA+ / QA-.
        queries_per_candidate: W, target queries per attacked candidate in CA+ / CA-.
    """

    eps: float
    step_size: float
    steps: int
    random_start: bool = False
    batch_size: int = 256
    candidates_per_query: int = 1
    queries_per_candidate: int = 1

    def __post_init__(self) -> None:
        if self.eps < 0 or self.step_size < 0 or self.steps < 0:
            raise ValueError(f"eps, step_size and steps must be >= 0, got {self.eps}, {self.step_size}, {self.steps}")
        if self.batch_size < 1 or self.candidates_per_query < 1 or self.queries_per_candidate < 1:
            raise ValueError("batch_size, candidates_per_query and queries_per_candidate must be >= 1")


class RankingAttack(ABC):
    """One ranking attack: target selection, objective and reported scores.

    ``queries`` below are the gallery slots of the attacked images, ``targets``
    the gallery indices chosen by ``select_targets`` for them, and
    ``embeddings`` the embeddings of the attacked images (clean or perturbed).
    """

    name: ClassVar[str]

    @property
    def scores(self) -> tuple[str, ...]:
        """Display names of the reported scores (``names.ATTACK_SCORES``)."""
        return ATTACK_SCORES[self.name]

    def pgd_steps(self, steps: int) -> int:
        """The PGD iterations this attack takes on a budget of ``steps`` (all of them; ``es_ref`` one fewer)."""
        return steps

    @abstractmethod
    def select_targets(self, gallery: Gallery, queries: Tensor, generator: torch.Generator) -> Tensor:
        """Gallery indices of the targets. Shape: (Q,) -> (Q, K)"""

    @abstractmethod
    def terms(self, gallery: Gallery, queries: Tensor, targets: Tensor) -> Terms:
        """Each perturbed image's loss terms, as a closure: one per image, or K per image (image-major).

        Shape: (B, D) -> (B,), (B * K,) or (B, K)
        """

    def objective(self, gallery: Gallery, queries: Tensor, targets: Tensor) -> Objective:
        """The loss sign-PGD minimises: the mean of every term. Shape: (B, D) -> ()"""
        terms = self.terms(gallery, queries, targets)
        return lambda embeddings: terms(embeddings).mean()

    def losses(self, gallery: Gallery, queries: Tensor, targets: Tensor) -> Callable[[Tensor], Tensor]:
        """Each image's own loss, the mean of its terms (what the adaptive engine minimises). Shape: (B, D) -> (B,)"""
        terms = self.terms(gallery, queries, targets)
        return lambda embeddings: terms(embeddings).reshape(len(embeddings), -1).mean(1)

    @abstractmethod
    def score(self, gallery: Gallery, queries: Tensor, targets: Tensor, embeddings: Tensor) -> dict[str, Tensor]:
        """Reported values per attacked image, float64. Shape: (B, D) -> each (B,)"""


def no_targets(queries: Tensor) -> Tensor:
    """The targets of an untargeted attack: none. Shape: (Q,) -> (Q, 0)"""
    return torch.zeros(len(queries), 0, dtype=torch.long, device=queries.device)
