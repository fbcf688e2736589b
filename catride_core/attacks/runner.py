"""Running the ranking attacks on a model: the registry by name and the runner (docs/method.md section 5).

Every test image is attacked once per attack; the gallery is the clean
embeddings of the whole test set, computed once for all attacks, and the
attacked image ``i`` owns gallery slot ``i``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.data import Dataset, Subset

from catride_core.attacks.base import AttackBudget, Gallery, RankingAttack
from catride_core.attacks.candidate_query import (
    CandidateAttack,
    GreedyTopTranslocation,
    QueryAttack,
)
from catride_core.attacks.embedding_space import (
    EmbeddingShift,
    ReferenceEmbeddingShift,
    TargetedMismatch,
)
from catride_core.attacks.misranking import (
    GreedyTopMisranking,
    LearningToMisrank,
    ReferenceGreedyTopMisranking,
    ReferenceLearningToMisrank,
)
from catride_core.attacks.pgd import check_adversarial, check_inputs, pgd
from catride_core.distributed import World
from catride_core.models.embedding import eval_mode, image_batches
from catride_core.names import ATTACKS
from catride_core.runtime import progress_bar

#: identifier-safe name -> the attack, given the budget's target counts
_REGISTRY: dict[str, Callable[[AttackBudget], RankingAttack]] = {
    "ca_plus": lambda budget: CandidateAttack(raise_rank=True, queries_per_candidate=budget.queries_per_candidate),
    "ca_minus": lambda budget: CandidateAttack(raise_rank=False, queries_per_candidate=budget.queries_per_candidate),
    "qa_plus": lambda budget: QueryAttack(raise_rank=True, candidates_per_query=budget.candidates_per_query),
    "qa_minus": lambda budget: QueryAttack(raise_rank=False, candidates_per_query=budget.candidates_per_query),
    "tma": lambda budget: TargetedMismatch(),
    "es": lambda budget: EmbeddingShift(),
    "ltm": lambda budget: LearningToMisrank(),
    "gtm": lambda budget: GreedyTopMisranking(),
    "gtt": lambda budget: GreedyTopTranslocation(),
    "gtm_ref": lambda budget: ReferenceGreedyTopMisranking(),
    "es_ref": lambda budget: ReferenceEmbeddingShift(),
    "ltm_ref": lambda budget: ReferenceLearningToMisrank(),
}


def _check_registry() -> None:
    """Fail at import unless the registry holds ``names.ATTACKS``, in order, each key building its own attack."""
    probe = AttackBudget(eps=0.0, step_size=0.0, steps=0)
    built = {key: build(probe).name for key, build in _REGISTRY.items()}
    if tuple(built) != ATTACKS or any(key != name for key, name in built.items()):
        raise RuntimeError(f"the attack registry {built} does not match names.ATTACKS {list(ATTACKS)}")


_check_registry()


def build_attack(name: str, budget: AttackBudget) -> RankingAttack:
    """The attack object for an identifier-safe name (one of ``names.ATTACKS``)."""
    if name not in _REGISTRY:
        raise ValueError(f"unknown attack {name!r}; available: {list(ATTACKS)}")
    return _REGISTRY[name](budget)


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


def run_attacks(
    names: Sequence[str],
    model: nn.Module,
    images: Tensor | Dataset,
    labels: Tensor,
    budget: AttackBudget,
    seed: int,
    *,
    max_queries: int | None = None,
    save_images: int = 0,
    progress: bool = False,
    block_size: int = 1024,
    world: World | None = None,
    num_workers: int = 0,
) -> dict[str, AttackResult]:
    """Attack every test image (or the first ``max_queries``) once with each named attack, in order.

    The model is put in eval mode for the whole run (each submodule's mode is
    restored afterwards). The gallery is the clean embeddings of all
    ``images``, embedded once for every attack in batches of
    ``budget.batch_size``; ``check_inputs`` runs on them once. Each attack then
    draws its targets for all attacked images up front from its own
    ``torch.Generator().manual_seed(seed)`` (so its targets and results depend
    neither on ``batch_size`` nor on the other attacks of the run; a random
    start draws from the same generator afterwards), every batch is read from
    ``images`` when it is attacked, attacked with ``pgd`` and checked with
    ``check_adversarial``, and the reported scores are per-query means. Memory
    is one batch of images and the gallery's embeddings, whatever N.

    With several processes (``world``), the gallery and the attacked images are
    split in shards of whole batches (``World.shard``); each process attacks its
    batches with the targets of all queries sliced to them, and every process
    returns the gathered results, equal to those of one process.

    Args:
        names: attacks to run, each one of ``names.ATTACKS``, no repeats.
        model: images in [0, 1] -> unit-norm embeddings.
        images: the whole test split: a float tensor in [0, 1], or a Dataset of
            (image, label) items (read lazily, as ``data.prepared.build_dataset``
            gives). Shape: (N, C, H, W)
        labels: its classes. Shape: (N,)
        budget: PGD budget, target counts and the batch size.
        seed: seed of every random choice of each attack.
        max_queries: attack only the first this many images (all by default);
            the gallery stays the whole test set.
        save_images: keep this many adversarial images (the first ones) per attack.
        progress: show one progress bar per attack on stderr (the first process only).
        block_size: queries handled at once by the exact searches.
        world: the processes sharing the work (default: this one alone).
        num_workers: DataLoader workers reading a Dataset (pinned memory on CUDA).

    Returns:
        attack name -> its clean and adversarial means, per-query values and targets.

    Raises:
        ValueError: an unknown or repeated name, or images and labels of the wrong shapes.
        AttackCheckError: the model is not in eval mode inside the run, an
            embedding is not finite, or a perturbation breaks the threat model.
    """
    world = world or World()
    attacks = [build_attack(name, budget) for name in names]
    repeated = sorted({name for name in names if list(names).count(name) > 1})
    if repeated:
        raise ValueError(f"attacks must not repeat; repeated: {repeated}")
    if isinstance(images, Tensor):
        if images.ndim != 4 or labels.shape != images.shape[:1]:
            raise ValueError(f"images {tuple(images.shape)} and labels {tuple(labels.shape)} "
                             "must be (N, C, H, W) and (N,)")
        device = _model_device(model, images.device)
    else:
        if labels.shape != (len(images),):
            raise ValueError(f"labels {tuple(labels.shape)} must be (N,) for a Dataset of {len(images)} images")
        device = _model_device(model, torch.device("cpu"))
    n_queries = len(images) if max_queries is None else min(max_queries, len(images))
    with eval_mode(model):
        embeddings = world.embed(model, images, budget.batch_size, device, num_workers)
        check_inputs(model, embeddings)
        gallery = Gallery(embeddings, labels.to(device), block_size)
        queries = torch.arange(n_queries, device=device)
        return {
            attack.name: _attack_queries(attack, model, images, gallery, queries, budget, seed, save_images, progress,
                                         world, num_workers)
            for attack in attacks
        }


def _attack_queries(
    attack: RankingAttack,
    model: nn.Module,
    images: Tensor | Dataset,
    gallery: Gallery,
    queries: Tensor,
    budget: AttackBudget,
    seed: int,
    save_images: int,
    progress: bool,
    world: World,
    num_workers: int = 0,
) -> AttackResult:
    """One attack on the images of gallery slots ``queries`` (the first Q), the model already in eval mode."""
    # a fresh generator per attack: its targets are those of a run of this attack alone
    generator = torch.Generator().manual_seed(seed)
    targets = attack.select_targets(gallery, queries, generator)
    steps = attack.pgd_steps(budget.steps)
    shard = world.shard(len(queries), budget.batch_size)
    clean: dict[str, list[Tensor]] = {score: [] for score in attack.scores}
    adversarial: dict[str, list[Tensor]] = {score: [] for score in attack.scores}
    saved: list[Tensor] = []
    n_saved = 0
    to_save = max(0, save_images - shard.start)  # the first save_images of all queries, this shard's part
    with progress_bar(enabled=progress and world.is_main, total=len(shard), desc=attack.name, unit="query") as bar:
        pinned = queries.device.type == "cuda"
        batches = _batches(images, shard, budget.batch_size, num_workers, pinned)
        for start, batch_images in zip(shard[:: budget.batch_size], batches):
            stop = min(start + budget.batch_size, shard.stop)
            batch, batch_targets = queries[start:stop], targets[start:stop]
            batch_images = batch_images.to(queries.device, non_blocking=pinned)
            if start == shard.start:
                _skip_random_starts(generator, budget, steps, start // budget.batch_size, batch_images)
            result = pgd(
                model,
                batch_images,
                attack.objective(gallery, batch, batch_targets),
                budget.eps,
                budget.step_size,
                steps,
                random_start=budget.random_start,
                generator=generator,
            )
            check_adversarial(batch_images, result.images, budget.eps)
            with torch.no_grad():
                # score the returned images themselves, not an earlier iterate
                adversarial_embeddings = model(result.images)
            for score, values in attack.score(gallery, batch, batch_targets, gallery.embeddings[batch]).items():
                clean[score].append(values.cpu())
            for score, values in attack.score(gallery, batch, batch_targets, adversarial_embeddings).items():
                adversarial[score].append(values.cpu())
            if n_saved < to_save:
                saved.append(result.images[: to_save - n_saved].cpu())
                n_saved += len(saved[-1])
            bar.update(len(batch))

    per_query: dict[str, np.ndarray] = {"index": queries.cpu().numpy(), "targets": targets.cpu().numpy()}
    for score in attack.scores:
        per_query[f"{score}/clean"] = world.gather(_concat(clean[score])).numpy()
        per_query[f"{score}/adversarial"] = world.gather(_concat(adversarial[score])).numpy()
    kept = world.gather(torch.cat(saved) if saved else torch.empty(0))
    return AttackResult(
        name=attack.name,
        clean={score: _mean(per_query[f"{score}/clean"]) for score in attack.scores},
        adversarial={score: _mean(per_query[f"{score}/adversarial"]) for score in attack.scores},
        per_query=per_query,
        images=kept if len(kept) else None,
        n_queries=len(queries),
    )


def _batches(images: Tensor | Dataset, shard: range, batch_size: int, num_workers: int, pin_memory: bool
             ) -> Iterator[Tensor]:
    """The images of items ``shard``, ``batch_size`` at a time, read from a Dataset only when asked for."""
    part = images[shard.start : shard.stop] if isinstance(images, Tensor) else Subset(images, shard)
    return image_batches(part, batch_size, num_workers, pin_memory)


def _skip_random_starts(
    generator: torch.Generator, budget: AttackBudget, steps: int, n_batches: int, batch_images: Tensor
) -> None:
    """Draw what the random starts of the ``n_batches`` (full) batches before this shard drew from ``generator``.

    ``pgd`` draws one uniform tensor of its batch's shape when it starts at
    random and takes a step; a shard that starts later draws those first, so
    its random starts are those of one process attacking every batch in turn.
    """
    if not (budget.random_start and budget.eps > 0 and budget.step_size > 0 and steps > 0):
        return
    shape = (budget.batch_size, *batch_images.shape[1:])
    for _ in range(n_batches):
        torch.rand(shape, generator=generator, device=generator.device)


def _model_device(model: nn.Module, default: torch.device) -> torch.device:
    """Where the model's parameters live (``default`` for a model without any)."""
    parameter = next(model.parameters(), None)
    return default if parameter is None else parameter.device


def _concat(chunks: list[Tensor]) -> Tensor:
    return torch.cat(chunks) if chunks else torch.zeros(0, dtype=torch.float64)


def _mean(values: np.ndarray) -> float:
    return float(values.mean()) if len(values) else float("nan")
