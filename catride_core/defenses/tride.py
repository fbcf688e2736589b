"""TRIDE and CA-TRIDE, (collapse-aware) triplet decoupling (Tian et al., ICML 2024; docs/method.md section 4.4).

Batches alternate between two perturbation targets, chosen by the global step
index alone (``decoupling_phase``), so that a resumed or multi-process run sees
the same sequence:

- CAP (even steps): the anchor stays clean, p and n are perturbed jointly;
  train on (f(a), f(p'), f(n')).
- ANP (odd steps): p and n stay clean, the anchor is perturbed;
  train on (f(a'), f(p), f(n)).

CA-TRIDE bounds CAP at the collapse boundary C = 0 and brakes ANP there;
TRIDE (``collapse_aware=False``) is the same defense without bound and brake,
with plain means instead of M_lambda.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

import torch
from torch import Tensor, nn

from catride_core.defenses.base import (
    AdversarialDefense,
    PerturbedTriplets,
    Role,
    TripletTensors,
    attack_roles,
)
from catride_core.distances import embedding_shift, paired_distances
from catride_core.losses import mine_triplets
from catride_core.retrieval.collapse import soft_max_mean
from catride_core.training import StepContext, StepOutput, batch_embeddings

Phase = Literal["cap", "anp"]
Ramp = Literal["progress", "epoch", "off"]
#: the step-size ramps of TRIDE and CA-TRIDE (docs/method.md section 4.4)
RAMPS: tuple[str, ...] = ("progress", "epoch", "off")


def decoupling_phase(step: int) -> Phase:
    """CAP on even global steps, ANP on odd ones (step 0 is CAP)."""
    return "cap" if step % 2 == 0 else "anp"


def _smallest_half_mean(distances: Tensor) -> Tensor:
    """Mean of the floor(B/2) smallest values (the single value when B = 1). Shape: (B,) -> scalar"""
    count = max(1, distances.shape[0] // 2)
    return distances.topk(count, largest=False).values.mean()


def cap_loss(
    anchors: Tensor, positives: Tensor, negatives: Tensor, inverse_temperature: float, collapse_aware: bool
) -> Tensor:
    """Candidate-perturbation objective, minimised over the perturbed positives and negatives.

    CA-TRIDE: [ M(D_an) - M(D_ap) ]_+ , zero (so PGD stops) once the batch
    reaches the collapse boundary C = M(D_ap) - M(D_an) = 0. TRIDE:
    mean(D_an) - mean(D_ap), unbounded.

    Shape:
        anchors, positives, negatives: (B, D) -> scalar
    """
    d_ap = paired_distances(anchors, positives)
    d_an = paired_distances(anchors, negatives)
    if not collapse_aware:
        return d_an.mean() - d_ap.mean()
    return (soft_max_mean(d_an, inverse_temperature) - soft_max_mean(d_ap, inverse_temperature)).clamp_min(0.0)


def anp_loss(
    anchors: Tensor,
    clean_anchors: Tensor,
    positives: Tensor,
    negatives: Tensor,
    inverse_temperature: float,
    collapse_aware: bool,
) -> Tensor:
    """Anchor-perturbation objective, minimised over the perturbed anchors.

    CA-TRIDE: [ M(D_ap) - M(D_an) ]_+ + gamma [ D_near - s_aa ]_+ with
    D_near the mean of the floor(B/2) smallest D_an, s_aa = mean_i d(f(a'_i), f(a_i))
    and gamma = exp(-[ M(D_an) - M(D_ap) ]_+) a constant. The first term (the
    brake) is zero while the batch is not collapsed (C <= 0); the second drives
    the anchors away from their clean embeddings until they have moved as far
    as their nearer negatives, less hard the further the batch is from collapse.
    TRIDE: -s_aa (maximise the anchors' shift), unbounded.

    Shape:
        anchors (perturbed), clean_anchors, positives, negatives: (B, D) -> scalar
    """
    # embedding_shift, not the plain norm: at the start a' = a and only it has a gradient there
    shift = embedding_shift(anchors, clean_anchors).mean()
    if not collapse_aware:
        return -shift
    d_ap = paired_distances(anchors, positives)
    d_an = paired_distances(anchors, negatives)
    separation = soft_max_mean(d_an, inverse_temperature) - soft_max_mean(d_ap, inverse_temperature)
    gamma = torch.exp(-separation.detach().clamp_min(0.0))
    return (-separation).clamp_min(0.0) + gamma * (_smallest_half_mean(d_an) - shift).clamp_min(0.0)


def authors_extra_term(d_ap: Tensor, d_an: Tensor, weight: float, margin: float) -> Tensor:
    """weight * [ mean(smallest half of D_ap) - mean(smallest half of D_an) + margin ]_+ .

    Undocumented in the paper: the authors' loss function adds it on every
    other call (0.5, 0.04), and each of their training steps calls it twice,
    first for a loss that is only logged and then for the one trained on, so
    the trained loss carries it at every step, CAP and ANP alike. Here it is
    an explicit option that adds it at every step.

    Shape:
        d_ap, d_an: (B,) -> scalar
    """
    return weight * (_smallest_half_mean(d_ap) - _smallest_half_mean(d_an) + margin).clamp_min(0.0)


class TripletDecoupling(AdversarialDefense):
    """CA-TRIDE (``collapse_aware=True``) or its TRIDE ablation.

    Triplets are mined with ``ctx.miner`` (gradual_semihard in the paper, with
    ``ctx.epoch`` / ``ctx.epochs``) on clean embeddings. The phase is
    ``decoupling_phase(ctx.step)``; the defense keeps no counter.

    Args:
        collapse_aware: CA-TRIDE's bound and brake (True) or TRIDE (False).
        eps, steps, diagnostic_inverse_temperature: as in ``AdversarialDefense``.
        inverse_temperature: lambda of M_lambda in CA-TRIDE's objectives (10 CUB,
            9.5 CARS, 2 SOP); TRIDE's plain means ignore it.
        step_size: alpha, the largest step size; ``ramp`` grows it to there.
        ramp: how the step size grows (``RAMPS``): ``progress``, alpha times
            the share of training done (global step / total steps);
            ``epoch``, the authors' alpha * t / T with t the 0-based epoch of T
            (a whole first epoch benign); ``off``, alpha throughout.
        stop_below: stop a batch's PGD once its loss is below this (1e-5). It
            only applies to CA-TRIDE: TRIDE's objectives have no floor at 0
            (ANP's -s_aa is negative from the start), so this rule would stop
            TRIDE's ANP before its first step and add a bound to its CAP.
        extra_term: add ``authors_extra_term`` of the training triplets to the
            loss of every step, CAP and ANP alike (default off; logged as ``extra``).
        extra_weight, extra_margin: its 0.5 and 0.04.
    """

    def __init__(
        self,
        *,
        collapse_aware: bool,
        eps: float,
        step_size: float,
        steps: int,
        inverse_temperature: float,
        diagnostic_inverse_temperature: float,
        ramp: Ramp,
        stop_below: float | None,
        extra_term: bool,
        extra_weight: float,
        extra_margin: float,
    ) -> None:
        super().__init__(
            eps=eps, step_size=step_size, steps=steps, diagnostic_inverse_temperature=diagnostic_inverse_temperature
        )
        self.inverse_temperature = inverse_temperature
        self.collapse_aware = collapse_aware
        self.name = "ca_tride" if collapse_aware else "tride"
        self.ramp = ramp
        self.stop_below = stop_below if collapse_aware else None
        self.extra_term = extra_term
        self.extra_weight = extra_weight
        self.extra_margin = extra_margin

    def step_size_at(self, ctx: StepContext) -> float:
        """The inner PGD's step size at this step, by ``ramp``; a function of the global step, so resumed
        and multi-process runs see the same value."""
        if self.ramp == "progress":
            return self.step_size * ctx.step / ctx.total_steps if ctx.total_steps else 0.0
        if self.ramp == "epoch":
            return self.step_size * ctx.epoch / ctx.epochs
        return self.step_size

    def perturb(self, model: nn.Module, images: Tensor, labels: Tensor, ctx: StepContext) -> PerturbedTriplets:
        embeddings = batch_embeddings(model, images, ctx)
        indices = mine_triplets(embeddings, labels, ctx.miner, ctx.margin, ctx.generator, ctx.epoch, ctx.epochs)
        anchors, positives, negatives = (embeddings[index] for index in indices)
        lam, aware = self.inverse_temperature, self.collapse_aware

        roles: tuple[Role, ...]
        if decoupling_phase(ctx.step) == "cap":
            roles = ("positives", "negatives")

            def objective(perturbed: Mapping[Role, Tensor]) -> Tensor:
                return cap_loss(anchors, perturbed["positives"], perturbed["negatives"], lam, aware)
        else:
            roles = ("anchors",)

            def objective(perturbed: Mapping[Role, Tensor]) -> Tensor:
                return anp_loss(perturbed["anchors"], anchors, positives, negatives, lam, aware)

        return attack_roles(
            model, images, indices, roles, objective,
            ctx=ctx, eps=self.eps, step_size=self.step_size_at(ctx), steps=self.steps,
            stop_below=self.stop_below,
        )

    def extra_losses(
        self, model: nn.Module, perturbed: PerturbedTriplets, embeddings: TripletTensors, ctx: StepContext
    ) -> dict[str, Tensor]:
        if not self.extra_term:
            return {}
        d_ap = paired_distances(embeddings.anchors, embeddings.positives)
        d_an = paired_distances(embeddings.anchors, embeddings.negatives)
        return {"extra": authors_extra_term(d_ap, d_an, self.extra_weight, self.extra_margin)}

    def train_loss(self, model: nn.Module, perturbed: PerturbedTriplets, ctx: StepContext) -> StepOutput:
        """As ``AdversarialDefense.train_loss``, plus the statistic ``anp`` (1 on ANP steps, 0 on CAP steps)."""
        out = super().train_loss(model, perturbed, ctx)
        out.stats["anp"] = float(decoupling_phase(ctx.step) == "anp")
        return out
