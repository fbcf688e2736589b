"""EST, embedding-shifted triplet (Zhou et al., ECCV 2020; docs/method.md section 4.1)."""

from __future__ import annotations

from torch import Tensor, nn

from catride_core.attacks.pgd import pgd
from catride_core.defenses.base import (
    ROLES,
    AdversarialDefense,
    PerturbedTriplets,
    TripletTensors,
)
from catride_core.distances import embedding_shift
from catride_core.losses import mine_triplets
from catride_core.models.embedding import embed
from catride_core.training import StepContext


class EmbeddingShiftedTriplet(AdversarialDefense):
    """Perturb every image of the batch to move its own embedding as far as it can; train on the result.

    Inner objective (minimised): -mean_x d(f(x'), f(x)) over the whole batch,
    each image against its own clean embedding. Triplets are then mined with the
    ``random`` miner on the adversarial embeddings, and the model trains on
    triplet(f(a'), f(p'), f(n')). Arguments as in ``AdversarialDefense``.
    """

    name = "est"

    def perturb(self, model: nn.Module, images: Tensor, labels: Tensor, ctx: StepContext) -> PerturbedTriplets:
        clean = embed(model, images)

        def objective(embeddings: Tensor) -> Tensor:
            # embedding_shift, not the plain norm: at the start x' = x and only it has a gradient there
            return -embedding_shift(embeddings, clean).mean()

        result = pgd(model, images, objective, self.eps, self.step_size, self.steps)
        adversarial = embed(model, result.images)
        indices = mine_triplets(adversarial, labels, "random", ctx.margin, ctx.generator, ctx.epoch, ctx.epochs)
        return PerturbedTriplets(
            indices,
            TripletTensors.gather(images, indices),
            TripletTensors.gather(result.images, indices),
            ROLES,
            result.loss,
            result.steps_taken,
        )
