"""The adaptive evaluation: every attack as hard as a careful reviewer would run it (docs/method.md section 11).

For each attack and attacked query, the objective and targets of the attack
stage are attacked several ways, on the same queries and targets:

- ``pgd``: RobRank's protocol, as the attack stage runs it (the reference);
- ``apgd``: the adaptive engine (``attacks.apgd``) from the clean image, with
  ``AdaptiveBudget.steps`` iterations, returning the best iterate;
- ``restart<k>``: the adaptive engine from ``AdaptiveBudget.restarts``
  uniform points of the ball, seeded;
- ``transfer``: for the attacks where it is meaningful (ES, CA+/-, QA+/-),
  the adaptive engine run on a surrogate model (the undefended one by
  default) and the perturbed images scored on the attacked model.

The **adaptive value** of each score and query is the worst of these for the
model (``worst_for_the_model``), so it is never better for the model than
RobRank's value. Each run's perturbation is checked (within eps, inside
[0, 1]) as the attack stage's is. The gradient norm at the clean images is
recorded per attack, the usual sign of a masked gradient when it collapses.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.data import Dataset, Subset

from catride_core.attacks.apgd import adaptive_pgd
from catride_core.attacks.base import AttackBudget, Gallery, RankingAttack
from catride_core.attacks.pgd import check_adversarial, check_inputs
from catride_core.attacks.queries import spread_first
from catride_core.attacks.runner import _attack_queries, build_attack
from catride_core.distributed import World
from catride_core.models.embedding import embed, eval_mode, image_batches
from catride_core.retrieval.robustness import ROBUST_DIRECTION
from catride_core.runtime import derive_seed, progress_bar

#: attacks whose perturbation is crafted against its own targets' rankings and makes sense on another model
TRANSFER_ATTACKS: tuple[str, ...] = ("ca_plus", "ca_minus", "qa_plus", "qa_minus", "es")



@dataclass(frozen=True)
class AdaptiveBudget:
    """How hard the adaptive evaluation attacks, beyond the attack stage's budget.

    Attributes:
        steps: iterations of the adaptive engine per run.
        restarts: further runs of it from uniform points of the ball.
    """

    steps: int = 100
    restarts: int = 2

    def __post_init__(self) -> None:
        if self.steps < 1 or self.restarts < 0:
            raise ValueError(f"steps must be >= 1 and restarts >= 0, got {self.steps}, {self.restarts}")

    @property
    def runs(self) -> tuple[str, ...]:
        """The white-box runs besides ``pgd``, in order."""
        return ("apgd", *(f"restart{k + 1}" for k in range(self.restarts)))


@dataclass(frozen=True)
class AdaptiveResult:
    """One attack's adaptive evaluation on one model.

    Attributes:
        name: identifier-safe attack name.
        runs: the runs made, in order (``pgd``, ``apgd``, ``restart1`` ..., ``transfer`` where it ran).
        per_query: ``"index"`` (gallery slot of each attacked image), ``"targets"``, and per
            score ``"<score>/clean"``, ``"<score>/<run>"`` for every run and
            ``"<score>/adaptive"``, the worst of the runs for the model. Shape: (Q,) each
        gradient_norm: mean L2 norm of the gradient of each image's loss at the clean image.
    """

    name: str
    runs: tuple[str, ...]
    per_query: dict[str, np.ndarray]
    gradient_norm: float

    def mean(self, score: str, run: str) -> float:
        return float(self.per_query[f"{score}/{run}"].mean())


def worst_for_the_model(score: str, values: Sequence[np.ndarray]) -> np.ndarray:
    """Per query, the value of ``score`` that is worst for the model among several runs' values."""
    stacked = np.stack(values)
    return stacked.min(0) if ROBUST_DIRECTION[score] > 0 else stacked.max(0)


def gradient_norms(model: nn.Module, images: Tensor, losses) -> Tensor:
    """L2 norm of the gradient of each image's loss with respect to the image, at ``images``. Shape: (B,)"""
    with eval_mode(model):
        start = images.detach().requires_grad_(True)
        (gradient,) = torch.autograd.grad(losses(model(start)).sum(), start)
    return gradient.flatten(1).norm(dim=1).detach()


def adaptive_attacks(
    names: Sequence[str],
    model: nn.Module,
    images: Dataset,
    labels: Tensor,
    budget: AttackBudget,
    adaptive: AdaptiveBudget,
    seed: int,
    n_queries: int,
    *,
    surrogate: nn.Module | None = None,
    progress: bool = False,
) -> dict[str, AdaptiveResult]:
    """Attack ``n_queries`` test images spread over the split with each named attack, every way (module docstring).

    The gallery is the whole split, embedded once per model; the attacked
    images are the first ``n_queries`` of ``queries.spread_first``, as the eps
    sweep's are. Targets come from ``torch.Generator().manual_seed(seed)`` per
    attack, as in the attack stage; restart ``k`` draws its start from a
    generator seeded by (seed, k). The surrogate, where given, attacks with its
    own gallery embeddings and the same targets.

    Returns:
        attack name -> its runs' per-query values, the adaptive value and the gradient norm.
    """
    device = next(model.parameters()).device
    order = spread_first(len(labels), min(n_queries, len(labels)))
    reordered, reordered_labels = Subset(images, order.tolist()), labels[order].to(device)
    queries = torch.arange(min(n_queries, len(labels)), device=device)
    with eval_mode(model):
        gallery = Gallery(embed(model, reordered, budget.batch_size, device), reordered_labels)
        check_inputs(model, gallery.embeddings)
        surrogate_gallery = None
        if surrogate is not None:
            with eval_mode(surrogate):
                surrogate_gallery = Gallery(embed(surrogate, reordered, budget.batch_size, device), reordered_labels)
        results = {}
        for name in names:
            attack = build_attack(name, budget)
            transfer = surrogate_gallery if name in TRANSFER_ATTACKS else None
            results[name] = _attack_every_way(attack, model, surrogate, reordered, gallery, transfer, queries, budget,
                                              adaptive, seed, progress)
    return results


def _attack_every_way(
    attack: RankingAttack,
    model: nn.Module,
    surrogate: nn.Module | None,
    images: Dataset,
    gallery: Gallery,
    surrogate_gallery: Gallery | None,
    queries: Tensor,
    budget: AttackBudget,
    adaptive: AdaptiveBudget,
    seed: int,
    progress: bool,
) -> AdaptiveResult:
    """One attack on the images of gallery slots ``queries``, by every run, batch by batch."""
    # the reference: the attack stage's own code on these queries (its targets, its random start where set)
    reference = _attack_queries(attack, model, images, gallery, queries, budget, seed, 0, False, World())
    targets = torch.as_tensor(reference.per_query["targets"], device=queries.device)
    runs = ("pgd", *adaptive.runs, *(("transfer",) if surrogate_gallery is not None else ()))
    values: dict[str, list[Tensor]] = {f"{score}/{run}": [] for score in attack.scores for run in runs[1:]}
    # restart k draws its starts, batch after batch, from its own generator: they do not depend on the batch size
    starts = [torch.Generator().manual_seed(derive_seed(seed, k)) for k in range(1, adaptive.restarts + 1)]
    norms: list[Tensor] = []
    subset = Subset(images, range(len(queries)))
    batches = image_batches(subset, budget.batch_size)
    with progress_bar(enabled=progress, total=len(queries), desc=f"{attack.name} (adaptive)", unit="query") as bar:
        for start, clean in zip(range(0, len(queries), budget.batch_size), batches, strict=True):
            clean = clean.to(queries.device)
            batch = queries[start : start + len(clean)]
            batch_targets = targets[start : start + len(clean)]
            losses = attack.losses(gallery, batch, batch_targets)
            norms.append(gradient_norms(model, clean, losses))
            perturbed = {"apgd": adaptive_pgd(model, clean, losses, budget.eps, adaptive.steps).images}
            for run, generator in zip(adaptive.runs[1:], starts, strict=True):
                perturbed[run] = adaptive_pgd(model, clean, losses, budget.eps, adaptive.steps, random_start=True,
                                              generator=generator).images
            if surrogate_gallery is not None:
                crafted = attack.losses(surrogate_gallery, batch, batch_targets)
                perturbed["transfer"] = adaptive_pgd(surrogate, clean, crafted, budget.eps, adaptive.steps).images
            with torch.no_grad():
                for run, adversarial in perturbed.items():
                    check_adversarial(clean, adversarial, budget.eps)
                    scored = attack.score(gallery, batch, batch_targets, model(adversarial))
                    for score, value in scored.items():
                        values[f"{score}/{run}"].append(value.cpu())
            bar.update(len(clean))
    per_query = {"index": queries.cpu().numpy(), "targets": reference.per_query["targets"]}
    for score in attack.scores:
        per_query[f"{score}/clean"] = reference.per_query[f"{score}/clean"]
        per_query[f"{score}/pgd"] = reference.per_query[f"{score}/adversarial"]
    per_query |= {key: torch.cat(chunks).double().numpy() for key, chunks in values.items()}
    for score in attack.scores:
        per_query[f"{score}/adaptive"] = worst_for_the_model(score, [per_query[f"{score}/{run}"] for run in runs])
    return AdaptiveResult(attack.name, runs, per_query, float(torch.cat(norms).mean()))


