"""The "none" defense: benign triplet training, as in pretraining (docs/method.md section 3)."""

from __future__ import annotations

from torch import Tensor, nn

from catride_core.defenses.base import Defense
from catride_core.training import StepContext, StepOutput, benign_step


class NoDefense(Defense):
    """Fine-tuning without an adversary: ``benign_step`` (miner ``ctx.miner``), no state."""

    name = "none"

    def __call__(self, model: nn.Module, images: Tensor, labels: Tensor, ctx: StepContext) -> StepOutput:
        return benign_step(model, images, labels, ctx)
