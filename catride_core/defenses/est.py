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
from catride_core.training import (
    StepContext,
    batch_embeddings,
    gather_rows,
    own_rows,
    own_triplets,
)


class EmbeddingShiftedTriplet(AdversarialDefense):
    """Perturb every image of the batch to move its own embedding as far as it can; train on the result.

    Inner objective (minimised): -mean_x d(f(x'), f(x)) over the whole batch,
    each image against its own clean embedding. Triplets are then mined with the
    ``random`` miner on the adversarial embeddings, and the model trains on
    triplet(f(a'), f(p'), f(n')). Arguments as in ``AdversarialDefense``.
    """

    name = "est"

    def perturb(self, model: nn.Module, images: Tensor, labels: Tensor, ctx: StepContext) -> PerturbedTriplets:
        clean = batch_embeddings(model, images, ctx)
        pairs = images.shape[0] // 2

        def objective(embeddings: Tensor) -> Tensor:
            # embedding_shift, not the plain norm: at the start x' = x and only it has a gradient there
            return -embedding_shift(gather_rows(embeddings, ctx, pairs), clean).mean()

        # under torchrun each process perturbs its own rows; the triplets are mined from all of them
        result = pgd(model, own_rows(images, ctx), objective, self.eps, self.step_size, self.steps)
        perturbed = gather_rows(result.images, ctx, pairs)
        adversarial = batch_embeddings(model, perturbed, ctx)
        indices = mine_triplets(adversarial, labels, "random", ctx.margin, ctx.generator, ctx.epoch, ctx.epochs)
        share = own_triplets(indices, ctx)
        return PerturbedTriplets(
            indices,
            TripletTensors.gather(images, share),
            TripletTensors.gather(perturbed, share),
            ROLES,
            result.loss,
            result.steps_taken,
        )
