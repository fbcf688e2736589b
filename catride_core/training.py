"""One training loop for benign pretraining and adversarial fine-tuning.

A step function turns one SPC-2 batch into a loss; benign pretraining uses
``benign_step``, and each defense provides its own (``catride_core.defenses``).
The loop owns the explicit training state: the epoch, the global step index
(CA-TRIDE's CAP/ANP alternation is a function of it) and per-epoch seeds for
the sampler and the miner, so a resumed or multi-process run sees the same
sequence.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

from catride_core.data.sampler import SPC2Sampler
from catride_core.errors import TrainingError
from catride_core.losses import mine_triplets, triplet_loss
from catride_core.runtime import progress_bar, seeded_generator


@dataclass(frozen=True)
class StepContext:
    """What a step function may know about where training stands."""

    epoch: int  # 0-based
    epochs: int
    step: int  # global step index over the whole run
    generator: torch.Generator  # CPU generator for this step's random choices
    margin: float
    miner: str


@dataclass
class StepOutput:
    """A step's loss (with gradient) and scalar statistics for the log."""

    loss: Tensor
    stats: dict[str, float] = field(default_factory=dict)


StepFn = Callable[[nn.Module, Tensor, Tensor, StepContext], StepOutput]


def benign_step(model: nn.Module, images: Tensor, labels: Tensor, ctx: StepContext) -> StepOutput:
    """Triplet loss on clean images, negatives mined on the batch's own embeddings.

    Shape:
        images: (2P, C, H, W) laid out [a1, p1, a2, p2, ...]; labels: (2P,)
    """
    embeddings = model(images)
    a, p, n = mine_triplets(embeddings.detach(), labels, ctx.miner, ctx.margin, ctx.generator, ctx.epoch, ctx.epochs)
    return StepOutput(triplet_loss(embeddings[a], embeddings[p], embeddings[n], ctx.margin))


def make_loader(dataset: Dataset, sampler: SPC2Sampler, num_workers: int, seed: int, epoch: int) -> DataLoader:
    """The epoch's SPC-2 DataLoader; worker RNGs (random crops, flips) are seeded per epoch."""
    sampler.set_epoch(epoch)
    return DataLoader(
        dataset,
        batch_sampler=sampler,
        num_workers=num_workers,
        generator=seeded_generator(seed, epoch, 1),
        persistent_workers=False,
    )


def check_finite(out: StepOutput, epoch: int, step: int) -> None:
    """Stop where training goes non-finite, before the optimiser step spreads it into the weights.

    Raises:
        TrainingError: naming the epoch (1-based, as the log counts), the global
            step and every quantity that is NaN or inf.
    """
    values = {"loss": float(out.loss.detach()), **out.stats}
    bad = {key: value for key, value in values.items() if not math.isfinite(value)}
    if bad:
        shown = ", ".join(f"{key} = {value}" for key, value in bad.items())
        raise TrainingError(
            f"training went non-finite at epoch {epoch + 1}, global step {step}: {shown}; "
            "nothing was written (a smaller learning rate or step size may help)"
        )


def train_epoch(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    loader: DataLoader,
    step_fn: StepFn,
    *,
    epoch: int,
    epochs: int,
    start_step: int,
    seed: int,
    margin: float,
    miner: str,
    device: torch.device,
    progress: bool = False,
) -> tuple[dict[str, float], int]:
    """Run one epoch; return the epoch's mean statistics and the next global step index."""
    step = start_step
    totals: dict[str, float] = {}
    batches = 0
    bar = progress_bar(loader, enabled=progress, desc=f"epoch {epoch + 1}/{epochs}", leave=False)
    for images, labels in bar:
        model.train()
        ctx = StepContext(epoch, epochs, step, seeded_generator(seed, step, 2), margin, miner)
        out = step_fn(model, images.to(device), labels.to(device), ctx)
        check_finite(out, epoch, step)
        optimizer.zero_grad(set_to_none=True)
        out.loss.backward()
        optimizer.step()
        for key, value in {"loss": float(out.loss.detach()), **out.stats}.items():
            totals[key] = totals.get(key, 0.0) + value
        batches += 1
        step += 1
        bar.set_postfix(loss=f"{totals['loss'] / batches:.4f}")
    return {key: value / max(batches, 1) for key, value in totals.items()}, step


def fit(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    train_set: Dataset,
    train_labels: Tensor,
    step_fn: StepFn,
    epoch_metrics: Callable[[nn.Module], dict[str, float]],
    *,
    epochs: int,
    pairs_per_batch: int,
    seed: int,
    margin: float,
    miner: str,
    device: torch.device,
    num_workers: int = 0,
    progress: bool = False,
) -> tuple[list[dict[str, float]], dict[str, int]]:
    """Train for ``epochs`` SPC-2 epochs; after each, log the step statistics and ``epoch_metrics(model)``.

    Returns:
        one log row per epoch, and the final training state (epoch, step).
    """
    sampler = SPC2Sampler(train_labels.numpy(), pairs_per_batch, seed)
    rows: list[dict[str, float]] = []
    step = 0
    for epoch in progress_bar(range(epochs), enabled=progress, desc="training"):
        loader = make_loader(train_set, sampler, num_workers, seed, epoch)
        stats, step = train_epoch(
            model, optimizer, loader, step_fn, epoch=epoch, epochs=epochs, start_step=step, seed=seed,
            margin=margin, miner=miner, device=device, progress=progress,
        )
        rows.append({"epoch": epoch + 1, "step": step, **stats, **epoch_metrics(model)})
    return rows, {"epoch": epochs, "step": step}
