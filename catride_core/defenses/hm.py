"""HM, hardness manipulation with the gradual adversary and ICS (Zhou & Patel, CVPR 2022; docs/method.md 4.3).

ICS is the intra-class structure term of the HM paper.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn

from catride_core.defenses.base import (
    ROLES,
    AdversarialDefense,
    PerturbedTriplets,
    Role,
    TripletTensors,
    attack_roles,
)
from catride_core.distances import paired_distances
from catride_core.losses import mine_triplets
from catride_core.training import (
    StepContext,
    StepOutput,
    batch_embeddings,
    gather_triplets,
)

#: L_prev before the first step: above any margin, so the first destination is the easiest one (-m)
INITIAL_PREV_LOSS = 2.0


def destination_hardness(prev_loss: float, margin: float) -> float:
    """Gradual adversary ("LGA"): H_dst = -m * clamp(L_prev, 0, m) / m = -clamp(L_prev, 0, m).

    A model whose adversarial triplet loss is still large gets the semihard
    boundary (-m) as destination; as its loss falls towards 0 the destination
    rises towards 0 (harder triplets). docs/method.md section 4.3 writes m = 0.2, the triplet margin.
    """
    return -margin * min(max(prev_loss, 0.0), margin) / margin


def hardness_gap(anchors: Tensor, positives: Tensor, negatives: Tensor, destination: float) -> Tensor:
    """mean_i (min(0, H_i - H_dst))^2 with hardness H = d(a, p) - d(a, n).

    Zero for triplets already at least as hard as the destination; minimising
    it makes easier triplets harder, up to the destination and no further.

    Shape:
        anchors, positives, negatives: (B, D) -> scalar
    """
    hardness = paired_distances(anchors, positives) - paired_distances(anchors, negatives)
    return (hardness - destination).clamp_max(0.0).square().mean()


class HardnessManipulation(AdversarialDefense):
    """Perturb a, p and n of semihard triplets up to a destination hardness set by the previous step's loss.

    Running state: ``prev_loss``, the previous step's adversarial triplet loss
    (before the ICS term), starting at 2.0; it is saved by ``state_dict``.

    Args:
        eps, step_size, steps, diagnostic_inverse_temperature: as in ``AdversarialDefense``.
        stop_change_below: stop PGD once its loss changes by less (1e-7).
        ics: add the intra-class structure term
            ics_weight * mean_i [ d(f(a_i), f(a'_i)) - d(f(a_i), f(p_i)) ]_+ ,
            a triplet with the clean anchor as anchor, the adversarial anchor as
            positive and the clean positive as negative, margin 0. All three
            embeddings come from the training forward pass and carry gradient,
            as in the reference code.
        ics_weight: 0.5 (0.05 on SOP).
    """

    name = "hm"

    def __init__(
        self,
        *,
        eps: float,
        step_size: float,
        steps: int,
        diagnostic_inverse_temperature: float,
        stop_change_below: float,
        ics: bool,
        ics_weight: float,
    ) -> None:
        super().__init__(
            eps=eps, step_size=step_size, steps=steps, diagnostic_inverse_temperature=diagnostic_inverse_temperature
        )
        self.stop_change_below = stop_change_below
        self.ics = ics
        self.ics_weight = ics_weight
        self.prev_loss = INITIAL_PREV_LOSS

    def state_dict(self) -> dict[str, Any]:
        return {"prev_loss": self.prev_loss}

    def _load(self, state: Mapping[str, Any]) -> None:
        self.prev_loss = float(state["prev_loss"])

    def perturb(self, model: nn.Module, images: Tensor, labels: Tensor, ctx: StepContext) -> PerturbedTriplets:
        embeddings = batch_embeddings(model, images, ctx)
        indices = mine_triplets(embeddings, labels, "semihard", ctx.margin, ctx.generator, ctx.epoch, ctx.epochs)
        destination = destination_hardness(self.prev_loss, ctx.margin)

        def objective(perturbed: Mapping[Role, Tensor]) -> Tensor:
            return hardness_gap(perturbed["anchors"], perturbed["positives"], perturbed["negatives"], destination)

        return attack_roles(
            model, images, indices, ROLES, objective,
            ctx=ctx, eps=self.eps, step_size=self.step_size, steps=self.steps, stop_change_below=self.stop_change_below,
        )

    def extra_losses(
        self, model: nn.Module, perturbed: PerturbedTriplets, embeddings: TripletTensors, ctx: StepContext
    ) -> dict[str, Tensor]:
        if not self.ics:
            return {}
        size, total = perturbed.clean.anchors.shape[0], perturbed.indices[0].shape[0]
        # the plain model, not ctx.trained(model): DDP takes one forward pass per backward, and the
        # gradients of this one reach the same parameters, so they are averaged with the rest
        local = model(torch.cat([perturbed.clean.anchors, perturbed.clean.positives])).split(size)
        anchors, positives = (gather_triplets(part, ctx, total) for part in local)
        hinge = paired_distances(anchors, embeddings.anchors) - paired_distances(anchors, positives)
        return {"ics": self.ics_weight * hinge.clamp_min(0.0).mean()}

    def train_loss(self, model: nn.Module, perturbed: PerturbedTriplets, ctx: StepContext) -> StepOutput:
        out = super().train_loss(model, perturbed, ctx)
        self.prev_loss = out.stats["triplet_loss"]
        return out
