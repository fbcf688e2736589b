"""ACT, anti-collapse triplet (Zhou et al., ECCV 2020 / T-PAMI 2024; docs/method.md section 4.2)."""

from __future__ import annotations

from collections.abc import Mapping

from torch import Tensor, nn

from catride_core.defenses.base import (
    AdversarialDefense,
    PerturbedTriplets,
    Role,
    attack_roles,
)
from catride_core.distances import paired_distances
from catride_core.losses import mine_triplets
from catride_core.training import StepContext, batch_embeddings


class AntiCollapseTriplet(AdversarialDefense):
    """Collapse each positive and its negative onto each other; train the model to pull them apart again.

    Triplets are mined with ``ctx.miner`` on clean embeddings; p and n are
    perturbed jointly to minimise mean_i d(f(p'_i), f(n'_i)); the model trains
    on triplet(f(a), f(p'), f(n')). Arguments as in ``AdversarialDefense``.
    """

    name = "act"

    def perturb(self, model: nn.Module, images: Tensor, labels: Tensor, ctx: StepContext) -> PerturbedTriplets:
        embeddings = batch_embeddings(model, images, ctx)
        indices = mine_triplets(embeddings, labels, ctx.miner, ctx.margin, ctx.generator, ctx.epoch, ctx.epochs)

        def objective(perturbed: Mapping[Role, Tensor]) -> Tensor:
            return paired_distances(perturbed["positives"], perturbed["negatives"]).mean()

        return attack_roles(
            model, images, indices, ("positives", "negatives"), objective,
            ctx=ctx, eps=self.eps, step_size=self.step_size, steps=self.steps,
        )
