"""What every defense shares (docs/method.md section 4).

A defense is a step function of the training loop (``catride_core.training``):
``defense(model, images, labels, ctx) -> StepOutput``. An adversarial defense
splits the step in two so that each half can be read and tested on its own:

- ``perturb``: mine triplets, choose which of their images to perturb, and
  minimise the defense's inner objective with the project's one sign-PGD
  (``catride_core.attacks.pgd.pgd``: model in eval mode, no random start,
  parameters untouched). It returns ``PerturbedTriplets``: the mined
  triplets' clean images, the images to train on (perturbed where the defense
  perturbs) and what PGD did.
- ``train_loss``: one forward pass of the training triplets in the mode the
  loop left the model in (train), the triplet loss on them, plus any term the
  defense adds (``extra_losses``).

Embeddings for mining and for the constants of an inner objective come from
``catride_core.models.embedding.embed``: eval mode, as the perturbation itself
(docs/method.md section 4), and no gradient, since they are targets that are
never trained through.

A defense's running state, if any, is explicit: ``state_dict`` /
``load_state_dict`` (only HM has some: its previous adversarial loss).

Under torchrun (``catride_core.training``) every process mines the same
triplets from the gathered embeddings of the global batch, perturbs and trains
on its share of them (``own_triplets``), and gathers the embeddings every
objective and loss is made of: inner objectives, losses and statistics are
those of the global batch, the same on every process.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any, Literal

import torch
from torch import Tensor, nn

from catride_core.attacks.pgd import pgd
from catride_core.distances import paired_distances
from catride_core.losses import triplet_loss
from catride_core.retrieval.collapse import collapseness
from catride_core.training import StepContext, StepOutput, gather_triplets, own_triplets

Role = Literal["anchors", "positives", "negatives"]
ROLES: tuple[Role, ...] = ("anchors", "positives", "negatives")

#: a batch's (anchor, positive, negative) indices, as a miner returns them. Shape: 3 x (B,)
TripletIndices = tuple[Tensor, Tensor, Tensor]


@dataclass(frozen=True)
class TripletTensors:
    """One tensor per role of B triplets: their images, or their embeddings.

    Shape:
        anchors, positives, negatives: (B, ...) each
    """

    anchors: Tensor
    positives: Tensor
    negatives: Tensor

    @classmethod
    def gather(cls, batch: Tensor, indices: TripletIndices) -> TripletTensors:
        """Copies of the batch rows each role selects; a batch item used twice gets two copies."""
        anchors, positives, negatives = indices
        return cls(batch[anchors], batch[positives], batch[negatives])

    def role(self, name: Role) -> Tensor:
        return getattr(self, name)


@dataclass(frozen=True)
class PerturbedTriplets:
    """What a defense's inner maximisation produced for one batch.

    Attributes:
        indices: the mined triplets of the global batch, indices into it. Shape: 3 x (B,)
        clean: the clean images of this process's triplets (``own_triplets``;
            all of them in one process). Shape: 3 x (B_rank, C, H, W)
        images: the images the defense trains on: the perturbed copies for the
            roles in ``roles``, the clean images for the others.
        roles: the roles PGD perturbed.
        loss: the inner objective (minimised) at the last iterate PGD evaluated.
        steps_taken: PGD steps applied (0 when nothing moved).
    """

    indices: TripletIndices
    clean: TripletTensors
    images: TripletTensors
    roles: tuple[Role, ...]
    loss: float
    steps_taken: int


def embed_triplets(model: nn.Module, perturbed: PerturbedTriplets, ctx: StepContext) -> TripletTensors:
    """Embeddings of all B training triplets with gradient, in the model's current mode.

    This process's triplets run in one forward pass through ``ctx.trained(model)``;
    the other processes' are gathered.

    Shape:
        perturbed.images: 3 x (B_rank, C, H, W) -> 3 x (B, D)
    """
    images = perturbed.images
    size, total = images.anchors.shape[0], perturbed.indices[0].shape[0]
    embeddings = ctx.trained(model)(torch.cat([images.anchors, images.positives, images.negatives]))
    return TripletTensors(*(gather_triplets(part, ctx, total) for part in embeddings.split(size)))


def attack_roles(
    model: nn.Module,
    images: Tensor,
    indices: TripletIndices,
    roles: tuple[Role, ...],
    objective: Callable[[Mapping[Role, Tensor]], Tensor],
    *,
    ctx: StepContext,
    eps: float,
    step_size: float,
    steps: int,
    stop_below: float | None = None,
    stop_change_below: float | None = None,
) -> PerturbedTriplets:
    """Perturb the images of ``roles`` jointly with one ``pgd`` run; keep the other roles clean.

    Under torchrun each process perturbs the images of its own triplets, and
    the objective sees the gathered embeddings of all B triplets: its value,
    and so PGD's stopping rules, are the same on every process.

    Args:
        model: the embedding model (the plain one, not the step's replica).
        images: the clean global batch. Shape: (2P, C, H, W)
        indices: the mined triplets, indices into the batch. Shape: 3 x (B,)
        roles: which roles to perturb, e.g. ``("positives", "negatives")``.
        objective: role -> embeddings of its perturbed images (only ``roles``;
            all B triplets) -> scalar loss to minimise. Clean embeddings of the
            unperturbed roles belong in its closure, as constants.
        ctx: the step (its processes).
        eps, step_size, steps, stop_below, stop_change_below: as in ``pgd``.
    """
    clean = TripletTensors.gather(images, own_triplets(indices, ctx))
    size, total = clean.anchors.shape[0], indices[0].shape[0]

    def joint(embeddings: Tensor) -> Tensor:
        return objective({role: gather_triplets(part, ctx, total) for role, part in zip(roles, embeddings.split(size))})

    batch = torch.cat([clean.role(role) for role in roles])
    result = pgd(
        model, batch, joint, eps, step_size, steps, stop_below=stop_below, stop_change_below=stop_change_below
    )
    perturbed = dict(zip(roles, result.images.split(size)))
    return PerturbedTriplets(indices, clean, replace(clean, **perturbed), roles, result.loss, result.steps_taken)


class Defense(ABC):
    """A training step function with explicit running state.

    Call it as a ``StepFn``: ``defense(model, images, labels, ctx) -> StepOutput``
    with ``images`` an SPC-2 batch (2P, C, H, W) laid out [a1, p1, a2, p2, ...].
    """

    name: str

    @abstractmethod
    def __call__(self, model: nn.Module, images: Tensor, labels: Tensor, ctx: StepContext) -> StepOutput:
        """One step's loss (with gradient) and statistics."""

    def state_dict(self) -> dict[str, Any]:
        """The running state to store in a checkpoint; empty for a stateless defense."""
        return {}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore what ``state_dict`` returned.

        Raises:
            KeyError: ``state`` does not hold exactly this defense's keys.
        """
        expected = set(self.state_dict())
        if set(state) != expected:
            raise KeyError(f"defense {self.name!r} state needs keys {sorted(expected)}, got {sorted(state)}")
        self._load(state)

    def _load(self, state: Mapping[str, Any]) -> None:
        """Set the running state from a checked ``state``; stateless defenses have nothing to set."""


class AdversarialDefense(Defense):
    """A defense that trains on triplets perturbed by an inner sign-PGD.

    Args:
        eps: L_inf radius in [0, 1] pixel units.
        step_size: PGD step size.
        steps: PGD iterations.
        diagnostic_inverse_temperature: lambda of the "collapseness" statistic
            logged per step (docs/method.md section 4.4), the same for every
            defense so that logs compare (``evaluate.diagnostic_inverse_temperature``).
    """

    def __init__(self, *, eps: float, step_size: float, steps: int, diagnostic_inverse_temperature: float) -> None:
        self.eps = eps
        self.step_size = step_size
        self.steps = steps
        self.diagnostic_inverse_temperature = diagnostic_inverse_temperature

    @abstractmethod
    def perturb(self, model: nn.Module, images: Tensor, labels: Tensor, ctx: StepContext) -> PerturbedTriplets:
        """Mine the batch's triplets and perturb the defense's roles (model parameters untouched).

        Shape:
            images: (2P, C, H, W); labels: (2P,)
        """

    def extra_losses(
        self, model: nn.Module, perturbed: PerturbedTriplets, embeddings: TripletTensors, ctx: StepContext
    ) -> dict[str, Tensor]:
        """Named terms the defense adds to the triplet loss (each logged under its name); none by default.

        ``embeddings`` are those of all B triplets (gathered under torchrun);
        ``perturbed`` holds this process's share of the images.
        """
        return {}

    def train_loss(self, model: nn.Module, perturbed: PerturbedTriplets, ctx: StepContext) -> StepOutput:
        """Triplet loss (margin ``ctx.margin``) on ``perturbed.images`` plus the defense's extra terms.

        Statistics: ``adv_loss`` (inner objective), ``pgd_steps``,
        ``triplet_loss`` (the adversarial triplet loss alone), ``collapseness``
        (C of the training triplets), and one entry per extra term.
        """
        embeddings = embed_triplets(model, perturbed, ctx)
        loss = triplet_loss(embeddings.anchors, embeddings.positives, embeddings.negatives, ctx.margin)
        extras = self.extra_losses(model, perturbed, embeddings, ctx)
        with torch.no_grad():
            d_ap = paired_distances(embeddings.anchors, embeddings.positives)
            d_an = paired_distances(embeddings.anchors, embeddings.negatives)
            collapse = float(collapseness(d_ap, d_an, self.diagnostic_inverse_temperature))
        stats = {
            "adv_loss": perturbed.loss,
            "pgd_steps": float(perturbed.steps_taken),
            "triplet_loss": float(loss.detach()),
            "collapseness": collapse,
            **{name: float(term.detach()) for name, term in extras.items()},
        }
        return StepOutput(loss + sum(extras.values(), torch.zeros((), device=loss.device)), stats)

    def __call__(self, model: nn.Module, images: Tensor, labels: Tensor, ctx: StepContext) -> StepOutput:
        return self.train_loss(model, self.perturb(model, images, labels, ctx), ctx)
