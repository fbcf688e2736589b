"""The ranking attacks of the "attack" stage (METHOD.md section 5).

Zhou et al., "Adversarial Ranking Attack and Defense" (ECCV 2020) and
"Adversarial Attack and Defense in Deep Ranking" (T-PAMI 2024); Zhou & Patel,
"Enhancing Adversarial Robustness for Deep Metric Learning" (CVPR 2022).

Threat model: L_inf ball of radius ``eps`` in [0, 1] pixel space, sign-PGD
(``catride_core.attacks.pgd``), no random start and the last iterate by
default. Every test image is attacked once per attack; the gallery is the
clean embeddings of the whole test set and the attacked image ``i`` owns
gallery slot ``i``. An attack is a small frozen object with three parts:

- ``select_targets``: seeded gallery indices (random ones never the attacked
  item itself and independent of the model; "top-1%" and "nearest" ones from
  the model's clean embeddings, by definition);
- ``objective``: a closure over the targets, embeddings of the perturbed
  images -> scalar loss that PGD minimises;
- ``score``: the reported per-query values, computed the same way on the clean
  embeddings (the "clean value", same targets) and on the adversarial ones.

"q's list" is the gallery ranked by distance to q *without q's own item*;
"prank" of an item in q's list is the share of that list ranked strictly ahead
of it, in %. In CA the perturbed candidate takes the place of its clean copy
in the gallery, so its clean copy never competes with it (and at eps = 0 the
CA prank equals the QA prank of the same pair).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm import tqdm

from catride_core.attacks.pgd import check_adversarial, check_inputs, eval_mode, pgd
from catride_core.attacks.targets import (
    nearest_neighbor_targets,
    nearest_other_label_targets,
    random_targets,
    top_fraction_targets,
)
from catride_core.distances import embedding_shift, paired_distances, pairwise_distances
from catride_core.retrieval.metrics import recall_at_1

#: identifier-safe attack names, in the order of METHOD.md section 5
ATTACKS: tuple[str, ...] = ("ca_plus", "ca_minus", "qa_plus", "qa_minus", "tma", "es", "ltm", "gtm", "gtt")

#: identifier-safe score names -> display names, in the order of the ERS vector
SCORE_NAMES: dict[str, str] = {
    "ca_plus": "CA+",
    "ca_minus": "CA-",
    "qa_plus": "QA+",
    "qa_minus": "QA-",
    "tma": "TMA",
    "es_d": "ES:D",
    "es_r": "ES:R",
    "ltm": "LTM",
    "gtm": "GTM",
    "gtt": "GTT",
}

#: attack -> display names of the scores it reports (ES reports two)
ATTACK_SCORES: dict[str, tuple[str, ...]] = {
    "ca_plus": ("CA+",),
    "ca_minus": ("CA-",),
    "qa_plus": ("QA+",),
    "qa_minus": ("QA-",),
    "tma": ("TMA",),
    "es": ("ES:D", "ES:R"),
    "ltm": ("LTM",),
    "gtm": ("GTM",),
    "gtt": ("GTT",),
}

#: GTT counts a query as defended while its clean top-1 stays within this many places
GTT_RETAIN_AT = 4

Objective = Callable[[Tensor], Tensor]


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
        candidates: M, candidates per attacked query in QA+ / QA-.
        queries: W, target queries per attacked candidate in CA+ / CA-.
    """

    eps: float
    step_size: float
    steps: int
    random_start: bool = False
    batch_size: int = 256
    candidates: int = 1
    queries: int = 1

    def __post_init__(self) -> None:
        if self.eps < 0 or self.step_size < 0 or self.steps < 0:
            raise ValueError(f"eps, step_size and steps must be >= 0, got {self.eps}, {self.step_size}, {self.steps}")
        if self.batch_size < 1 or self.candidates < 1 or self.queries < 1:
            raise ValueError("batch_size, candidates and queries must be >= 1")


@dataclass(frozen=True)
class AttackResult:
    """Scores of one attack on one model.

    Attributes:
        name: identifier-safe attack name (``ca_plus`` ...).
        clean: display score name -> mean over the attacked queries before the
            perturbation (same targets).
        adversarial: display score name -> mean over the attacked queries after it.
        per_query: ``"index"`` (gallery slot of each attacked image),
            ``"targets"`` (gallery indices, shape (Q, K), K = 0 for untargeted
            attacks) and, for every score, ``"<score>/clean"`` and
            ``"<score>/adversarial"``. Shape: (Q,) unless said
        images: the first ``save_images`` adversarial images on the CPU, or None.
        n_queries: Q, the number of attacked images.
    """

    name: str
    clean: dict[str, float]
    adversarial: dict[str, float]
    per_query: dict[str, np.ndarray]
    images: Tensor | None
    n_queries: int


class RankingAttack(ABC):
    """One ranking attack: target selection, objective and reported scores.

    ``queries`` below are the gallery slots of the attacked images, ``targets``
    the gallery indices chosen by ``select_targets`` for them, and
    ``embeddings`` the embeddings of the attacked images (clean or perturbed).
    """

    name: ClassVar[str]

    @property
    def scores(self) -> tuple[str, ...]:
        """Display names of the reported scores."""
        return ATTACK_SCORES[self.name]

    @abstractmethod
    def select_targets(self, gallery: Gallery, queries: Tensor, generator: torch.Generator) -> Tensor:
        """Gallery indices of the targets. Shape: (Q,) -> (Q, K)"""

    @abstractmethod
    def objective(self, gallery: Gallery, queries: Tensor, targets: Tensor) -> Objective:
        """The loss PGD minimises, as a closure. Shape: (B, D) -> ()"""

    @abstractmethod
    def score(self, gallery: Gallery, queries: Tensor, targets: Tensor, embeddings: Tensor) -> dict[str, Tensor]:
        """Reported values per attacked image, float64. Shape: (B, D) -> each (B,)"""


def _own_item_mask(queries: Tensor, n_gallery: int) -> Tensor:
    """True everywhere except at each row's own gallery slot. Shape: (B,) -> (B, N)"""
    keep = torch.ones(len(queries), n_gallery, dtype=torch.bool, device=queries.device)
    keep[torch.arange(len(queries), device=queries.device), queries] = False
    return keep


def _count_ahead(list_distances: Tensor, item_distances: Tensor, competing: Tensor) -> Tensor:
    """How many competing gallery items are strictly nearer to a list's query than the ranked item.

    Args:
        list_distances: distance from each list's query to every gallery item. Shape: (R, N)
        item_distances: distance from each list's query to the ranked item. Shape: (R,)
        competing: the other members of each list (neither the query's own
            item nor the ranked item). Shape: (R, N)

    Returns:
        Shape: (R,) int64
    """
    return ((list_distances < item_distances[:, None]) & competing).sum(1)


def _prank(n_ahead: Tensor, competing: Tensor) -> Tensor:
    """prank (%): share of the list (its other members plus the ranked item) ahead of the item."""
    return 100.0 * n_ahead.double() / (competing.sum(-1) + 1).double()


def _hinge_mean(hinge: Tensor, competing: Tensor) -> Tensor:
    """Mean of a hinge over the other members of each list, then over the lists."""
    return ((hinge * competing).sum(-1) / competing.sum(-1).clamp_min(1)).mean()


def _competing(owners: Tensor, ranked: Tensor, n_gallery: int) -> Tensor:
    """The other members of each ranking list: every gallery item but two.

    Args:
        owners: gallery slot of each list's query, never in its own list. Shape: (R,)
        ranked: gallery slot of the ranked item (or of the clean copy it replaces). Shape: (R,)
        n_gallery: N.

    Returns:
        Shape: (R, N) bool
    """
    competing = torch.ones(len(owners), n_gallery, dtype=torch.bool, device=owners.device)
    rows = torch.arange(len(owners), device=owners.device)
    competing[rows, owners] = False
    competing[rows, ranked] = False
    return competing


@dataclass(frozen=True)
class CandidateAttack(RankingAttack):
    """CA+ / CA-: perturb a candidate c to raise (+) or lower (-) it in the lists of W queries.

    Targets: W distinct random gallery items (CA+) or W from c's top-1% (CA-).
    Objective: mean_x [d(c', q) - d(x, q)]_+ (CA+) or [d(x, q) - d(c', q)]_+
    (CA-) over the other members x of q's list, in which c' replaces c.
    Score: prank (%) of c' in q's list, averaged over the W queries.
    """

    raise_rank: bool
    n_queries: int = 1

    @property
    def name(self) -> str:  # type: ignore[override]
        return "ca_plus" if self.raise_rank else "ca_minus"

    def select_targets(self, gallery: Gallery, queries: Tensor, generator: torch.Generator) -> Tensor:
        if self.raise_rank:
            return random_targets(gallery.size, queries, self.n_queries, generator)
        return top_fraction_targets(gallery.embeddings, queries, self.n_queries, generator, gallery.block_size)

    def _lists(self, gallery: Gallery, queries: Tensor, targets: Tensor, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
        """Distances from each target query to the gallery, and the other members of its list.

        Shape:
            returns (B * W, N) and (B * W, N); row b * W + w is query w of candidate b
        """
        embeddings = gallery.embeddings.to(dtype)
        flat_targets = targets.reshape(-1)
        list_distances = pairwise_distances(embeddings[flat_targets], embeddings)
        candidates = queries.repeat_interleave(targets.shape[1])
        return list_distances, _competing(flat_targets, candidates, gallery.size)

    def objective(self, gallery: Gallery, queries: Tensor, targets: Tensor) -> Objective:
        with torch.no_grad():
            list_distances, competing = self._lists(gallery, queries, targets, gallery.embeddings.dtype)
        target_embeddings = gallery.embeddings[targets.reshape(-1)]
        per_candidate = targets.shape[1]
        sign = 1.0 if self.raise_rank else -1.0

        def loss(embeddings: Tensor) -> Tensor:
            candidate = paired_distances(embeddings.repeat_interleave(per_candidate, 0), target_embeddings)
            return _hinge_mean((sign * (candidate[:, None] - list_distances)).clamp_min(0.0), competing)

        return loss

    @torch.no_grad()
    def score(self, gallery: Gallery, queries: Tensor, targets: Tensor, embeddings: Tensor) -> dict[str, Tensor]:
        list_distances, competing = self._lists(gallery, queries, targets, torch.float64)
        candidate = paired_distances(
            embeddings.double().repeat_interleave(targets.shape[1], 0),
            gallery.embeddings.double()[targets.reshape(-1)],
        )
        prank = _prank(_count_ahead(list_distances, candidate, competing), competing)
        return {self.scores[0]: prank.view(targets.shape).mean(1)}


@dataclass(frozen=True)
class QueryAttack(RankingAttack):
    """QA+ / QA-: perturb a query q to raise (+) or lower (-) M candidates in its list.

    Targets: M distinct random gallery items (QA+) or M from q's top-1% (QA-).
    Objective: mean_x [d(q', c) - d(q', x)]_+ (QA+) or [d(q', x) - d(q', c)]_+
    (QA-) over the other members x of q's list. Score: prank (%) of c in q''s
    list, averaged over the M candidates.
    """

    raise_rank: bool
    n_candidates: int = 1

    @property
    def name(self) -> str:  # type: ignore[override]
        return "qa_plus" if self.raise_rank else "qa_minus"

    def select_targets(self, gallery: Gallery, queries: Tensor, generator: torch.Generator) -> Tensor:
        if self.raise_rank:
            return random_targets(gallery.size, queries, self.n_candidates, generator)
        return top_fraction_targets(gallery.embeddings, queries, self.n_candidates, generator, gallery.block_size)

    def objective(self, gallery: Gallery, queries: Tensor, targets: Tensor) -> Objective:
        return _query_rank_objective(gallery, queries, targets, self.raise_rank)

    @torch.no_grad()
    def score(self, gallery: Gallery, queries: Tensor, targets: Tensor, embeddings: Tensor) -> dict[str, Tensor]:
        n_ahead, competing = _query_ranks(gallery, queries, targets, embeddings)
        return {self.scores[0]: _prank(n_ahead, competing).mean(1)}


def _query_competing(gallery: Gallery, queries: Tensor, targets: Tensor) -> Tensor:
    """The other members of each query's list for each of its targets. Shape: (B, K, N)"""
    lists = torch.arange(len(queries), device=queries.device).repeat_interleave(targets.shape[1])
    competing = _competing(queries[lists], targets.reshape(-1), gallery.size)
    return competing.view(*targets.shape, gallery.size)


def _query_rank_objective(gallery: Gallery, queries: Tensor, targets: Tensor, raise_rank: bool) -> Objective:
    """QA+ (raise) / QA- (lower) hinge of every target in the perturbed query's list."""
    competing = _query_competing(gallery, queries, targets)
    sign = 1.0 if raise_rank else -1.0

    def loss(embeddings: Tensor) -> Tensor:
        distances = pairwise_distances(embeddings, gallery.embeddings)
        candidate = distances.gather(1, targets)
        return _hinge_mean((sign * (candidate[:, :, None] - distances[:, None, :])).clamp_min(0.0), competing)

    return loss


def _query_ranks(gallery: Gallery, queries: Tensor, targets: Tensor, embeddings: Tensor) -> tuple[Tensor, Tensor]:
    """Items ahead of each target in each (clean or perturbed) query's list, and the lists.

    Shape:
        returns (B, K) int64 and (B, K, N) bool
    """
    distances = pairwise_distances(embeddings.double(), gallery.embeddings.double())
    competing = _query_competing(gallery, queries, targets)
    item = distances.gather(1, targets)
    n_ahead = _count_ahead(
        distances.repeat_interleave(targets.shape[1], 0), item.reshape(-1), competing.flatten(0, 1)
    )
    return n_ahead.view(targets.shape), competing


@dataclass(frozen=True)
class TargetedMismatch(RankingAttack):
    """TMA: pull the query's embedding towards one random gallery embedding t.

    Objective: 1 - cos(f(q'), t). Score: cos(f(q'), t).
    """

    name: ClassVar[str] = "tma"

    def select_targets(self, gallery: Gallery, queries: Tensor, generator: torch.Generator) -> Tensor:
        return random_targets(gallery.size, queries, 1, generator)

    def objective(self, gallery: Gallery, queries: Tensor, targets: Tensor) -> Objective:
        target = gallery.embeddings[targets[:, 0]]
        return lambda embeddings: (1.0 - F.cosine_similarity(embeddings, target)).mean()

    @torch.no_grad()
    def score(self, gallery: Gallery, queries: Tensor, targets: Tensor, embeddings: Tensor) -> dict[str, Tensor]:
        target = gallery.embeddings[targets[:, 0]].double()
        return {"TMA": F.cosine_similarity(embeddings.double(), target)}


@dataclass(frozen=True)
class EmbeddingShift(RankingAttack):
    """ES: move the query's embedding as far as possible from its clean embedding.

    Objective: -d(f(q'), f(q)) (``embedding_shift``, which has a gradient at
    the start). Scores: ES:D, the shift of the returned image, and ES:R, R@1
    (%) of q' with q's own gallery slot excluded.
    """

    name: ClassVar[str] = "es"

    def select_targets(self, gallery: Gallery, queries: Tensor, generator: torch.Generator) -> Tensor:
        return _no_targets(queries)

    def objective(self, gallery: Gallery, queries: Tensor, targets: Tensor) -> Objective:
        clean = gallery.embeddings[queries]
        return lambda embeddings: -embedding_shift(embeddings, clean).mean()

    @torch.no_grad()
    def score(self, gallery: Gallery, queries: Tensor, targets: Tensor, embeddings: Tensor) -> dict[str, Tensor]:
        shift = paired_distances(embeddings.double(), gallery.embeddings[queries].double())
        return {"ES:D": shift, "ES:R": _recall_at_1(gallery, queries, embeddings)}


@dataclass(frozen=True)
class LearningToMisrank(RankingAttack):
    """LTM: make every other-label item nearer to the query than every same-label one.

    Objective: [max_{x: y_x != y} d(q', x) - min_{x: y_x = y, x != q} d(q', x)]_+ ;
    the query's own clean embedding is not a positive (the reference code
    forgets to exclude it, so its positive term starts at 0). Score: R@1 (%) of q'.
    """

    name: ClassVar[str] = "ltm"

    def select_targets(self, gallery: Gallery, queries: Tensor, generator: torch.Generator) -> Tensor:
        return _no_targets(queries)

    def objective(self, gallery: Gallery, queries: Tensor, targets: Tensor) -> Objective:
        same = gallery.labels[queries][:, None] == gallery.labels[None, :]
        positive = same & _own_item_mask(queries, gallery.size)

        def loss(embeddings: Tensor) -> Tensor:
            distances = pairwise_distances(embeddings, gallery.embeddings)
            farthest_negative = distances.masked_fill(same, -torch.inf).amax(1)
            nearest_positive = distances.masked_fill(~positive, torch.inf).amin(1)
            return (farthest_negative - nearest_positive).clamp_min(0.0).mean()

        return loss

    @torch.no_grad()
    def score(self, gallery: Gallery, queries: Tensor, targets: Tensor, embeddings: Tensor) -> dict[str, Tensor]:
        return {"LTM": _recall_at_1(gallery, queries, embeddings)}


@dataclass(frozen=True)
class GreedyTopMisranking(RankingAttack):
    """GTM: pull the query onto u, the truly nearest gallery item of another label.

    Objective: d(f(q'), u). Score: R@1 (%) of q'.
    """

    name: ClassVar[str] = "gtm"

    def select_targets(self, gallery: Gallery, queries: Tensor, generator: torch.Generator) -> Tensor:
        return nearest_other_label_targets(gallery.embeddings, gallery.labels, queries, gallery.block_size)

    def objective(self, gallery: Gallery, queries: Tensor, targets: Tensor) -> Objective:
        target = gallery.embeddings[targets[:, 0]]
        return lambda embeddings: paired_distances(embeddings, target).mean()

    @torch.no_grad()
    def score(self, gallery: Gallery, queries: Tensor, targets: Tensor, embeddings: Tensor) -> dict[str, Tensor]:
        return {"GTM": _recall_at_1(gallery, queries, embeddings)}


@dataclass(frozen=True)
class GreedyTopTranslocation(RankingAttack):
    """GTT: push the query's clean top-1 neighbour down its list (QA- on that neighbour).

    Score: retain@4, 100 when the clean top-1 is still among the first 4 of
    q''s list (fewer than 4 items strictly ahead of it), else 0.
    """

    name: ClassVar[str] = "gtt"

    def select_targets(self, gallery: Gallery, queries: Tensor, generator: torch.Generator) -> Tensor:
        return nearest_neighbor_targets(gallery.embeddings, queries, gallery.block_size)

    def objective(self, gallery: Gallery, queries: Tensor, targets: Tensor) -> Objective:
        return _query_rank_objective(gallery, queries, targets, raise_rank=False)

    @torch.no_grad()
    def score(self, gallery: Gallery, queries: Tensor, targets: Tensor, embeddings: Tensor) -> dict[str, Tensor]:
        n_ahead, _ = _query_ranks(gallery, queries, targets, embeddings)
        return {"GTT": 100.0 * (n_ahead[:, 0] < GTT_RETAIN_AT).double()}


def _no_targets(queries: Tensor) -> Tensor:
    return torch.zeros(len(queries), 0, dtype=torch.long, device=queries.device)


def _recall_at_1(gallery: Gallery, queries: Tensor, embeddings: Tensor) -> Tensor:
    """R@1 (%) of each attacked image, its own gallery slot excluded."""
    query_labels = gallery.labels[queries]
    hits = recall_at_1(embeddings, query_labels, gallery.embeddings, gallery.labels, queries, gallery.block_size)
    return 100.0 * hits.double()


def build_attack(name: str, budget: AttackBudget) -> RankingAttack:
    """The attack object for an identifier-safe name (see ``ATTACKS``)."""
    attacks: dict[str, Callable[[], RankingAttack]] = {
        "ca_plus": lambda: CandidateAttack(raise_rank=True, n_queries=budget.queries),
        "ca_minus": lambda: CandidateAttack(raise_rank=False, n_queries=budget.queries),
        "qa_plus": lambda: QueryAttack(raise_rank=True, n_candidates=budget.candidates),
        "qa_minus": lambda: QueryAttack(raise_rank=False, n_candidates=budget.candidates),
        "tma": TargetedMismatch,
        "es": EmbeddingShift,
        "ltm": LearningToMisrank,
        "gtm": GreedyTopMisranking,
        "gtt": GreedyTopTranslocation,
    }
    if name not in attacks:
        raise ValueError(f"unknown attack {name!r}; available: {list(ATTACKS)}")
    return attacks[name]()


@torch.no_grad()
def embed_images(model: nn.Module, images: Tensor, batch_size: int, device: torch.device) -> Tensor:
    """Embeddings of an image tensor, ``batch_size`` at a time, in the model's current mode.

    Shape:
        images: (N, C, H, W) -> (N, D) on ``device``
    """
    chunks = [model(images[start : start + batch_size].to(device)) for start in range(0, len(images), batch_size)]
    return torch.cat(chunks)


def run_attack(
    name: str,
    model: nn.Module,
    images: Tensor,
    labels: Tensor,
    budget: AttackBudget,
    seed: int,
    max_queries: int | None = None,
    save_images: int = 0,
    progress: bool = False,
    block_size: int = 1024,
) -> AttackResult:
    """Attack every test image (or the first ``max_queries``) once and score the result.

    The model is put in eval mode for the whole run (each submodule's mode is
    restored afterwards). The gallery is the clean embeddings of all
    ``images``; ``check_inputs`` runs on them, targets are drawn for all
    attacked images up front from ``torch.Generator().manual_seed(seed)`` (so
    they do not depend on ``batch_size``; a random start draws from the same
    generator afterwards), every batch is attacked with ``pgd`` and checked
    with ``check_adversarial``, and the reported scores are per-query means.

    Args:
        name: one of ``ATTACKS``.
        model: images in [0, 1] -> unit-norm embeddings.
        images: the whole test split, float in [0, 1]. Shape: (N, C, H, W)
        labels: its classes. Shape: (N,)
        budget: PGD budget and target counts.
        seed: seed of every random choice.
        max_queries: attack only the first this many images (all by default);
            the gallery stays the whole test set.
        save_images: keep this many adversarial images (the first ones).
        progress: show a tqdm bar on stderr.
        block_size: queries handled at once by the exact searches.

    Returns:
        clean and adversarial means, per-query values and targets.

    Raises:
        AttackCheckError: the model is not in eval mode inside the run, an
            embedding is not finite, or a perturbation breaks the threat model.
    """
    attack = build_attack(name, budget)
    if images.ndim != 4 or labels.shape != images.shape[:1]:
        raise ValueError(f"images {tuple(images.shape)} and labels {tuple(labels.shape)} must be (N, C, H, W) and (N,)")
    device = _model_device(model, images.device)
    n_queries = len(images) if max_queries is None else min(max_queries, len(images))
    generator = torch.Generator().manual_seed(seed)
    with eval_mode(model):
        embeddings = embed_images(model, images, budget.batch_size, device)
        check_inputs(model, embeddings)
        gallery = Gallery(embeddings, labels.to(device), block_size)
        queries = torch.arange(n_queries, device=device)
        targets = attack.select_targets(gallery, queries, generator)
        clean: dict[str, list[Tensor]] = {score: [] for score in attack.scores}
        adversarial: dict[str, list[Tensor]] = {score: [] for score in attack.scores}
        saved: list[Tensor] = []
        n_saved = 0
        with tqdm(total=n_queries, desc=name, unit="query", disable=not progress) as bar:
            for start in range(0, n_queries, budget.batch_size):
                stop = min(start + budget.batch_size, n_queries)
                batch, batch_targets = queries[start:stop], targets[start:stop]
                batch_images = images[start:stop].to(device)
                result = pgd(
                    model,
                    batch_images,
                    attack.objective(gallery, batch, batch_targets),
                    budget.eps,
                    budget.step_size,
                    budget.steps,
                    random_start=budget.random_start,
                    generator=generator,
                )
                check_adversarial(batch_images, result.images, budget.eps)
                with torch.no_grad():
                    # score the returned images themselves, not an earlier iterate
                    adversarial_embeddings = model(result.images)
                for score, values in attack.score(gallery, batch, batch_targets, embeddings[batch]).items():
                    clean[score].append(values.cpu())
                for score, values in attack.score(gallery, batch, batch_targets, adversarial_embeddings).items():
                    adversarial[score].append(values.cpu())
                if n_saved < save_images:
                    saved.append(result.images[: save_images - n_saved].cpu())
                    n_saved += len(saved[-1])
                bar.update(len(batch))

    per_query: dict[str, np.ndarray] = {
        "index": queries.cpu().numpy(),
        "targets": targets.cpu().numpy(),
    }
    for score in attack.scores:
        per_query[f"{score}/clean"] = _concat(clean[score])
        per_query[f"{score}/adversarial"] = _concat(adversarial[score])
    return AttackResult(
        name=name,
        clean={score: _mean(per_query[f"{score}/clean"]) for score in attack.scores},
        adversarial={score: _mean(per_query[f"{score}/adversarial"]) for score in attack.scores},
        per_query=per_query,
        images=torch.cat(saved) if saved else None,
        n_queries=n_queries,
    )


def _model_device(model: nn.Module, default: torch.device) -> torch.device:
    """Where the model's parameters live (``default`` for a model without any)."""
    parameter = next(model.parameters(), None)
    return default if parameter is None else parameter.device


def _concat(chunks: list[Tensor]) -> np.ndarray:
    return torch.cat(chunks).numpy() if chunks else np.zeros(0)


def _mean(values: np.ndarray) -> float:
    return float(values.mean()) if len(values) else float("nan")
