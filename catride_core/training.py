"""One training loop for benign pretraining and adversarial fine-tuning.

A step function turns one SPC-2 batch into a loss; benign pretraining uses
``benign_step``, and each defense provides its own (``catride_core.defenses``).
The loop owns the explicit training state: the epoch, the global step index
(CA-TRIDE's CAP/ANP alternation is a function of it) and per-epoch seeds for
the sampler and the miner, so a resumed or multi-process run sees the same
sequence.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

from catride_core.data.sampler import SPC2Sampler
from catride_core.errors import TrainingError
from catride_core.losses import mine_triplets, triplet_loss
from catride_core.runtime import derive_seed, progress_bar, seeded_generator


@dataclass(frozen=True)
class StepContext:
    """What a step function may know about where training stands."""

    epoch: int  # 0-based
    epochs: int
    step: int  # global step index over the whole run
    generator: torch.Generator  # CPU generator for this step's random choices
    margin: float
    miner: str
    total_steps: int = 0  # global steps of the whole run (0: unknown)


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


def make_loader(
    dataset: Dataset, sampler: SPC2Sampler, num_workers: int, seed: int, epoch: int, pin_memory: bool = False
) -> DataLoader:
    """The epoch's SPC-2 DataLoader; worker RNGs (random crops, flips) are seeded per epoch."""
    sampler.set_epoch(epoch)
    return DataLoader(
        dataset,
        batch_sampler=sampler,
        num_workers=num_workers,
        generator=seeded_generator(seed, epoch, 1),
        persistent_workers=False,
        pin_memory=pin_memory,
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


@dataclass
class Progress:
    """Where a training run stands: exactly what it needs, besides the weights, optimiser and defense, to go on.

    Attributes:
        epoch: the epoch in progress (0-based); ``epochs`` once training is done.
        batch: how many batches of that epoch are trained on.
        step: the global step index (the next step's).
        totals: running sums of that epoch's step statistics.
        rows: the log rows of the completed epochs.
    """

    epoch: int = 0
    batch: int = 0
    step: int = 0
    totals: dict[str, float] = field(default_factory=dict)
    rows: list[dict[str, float]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "batch": self.batch, "step": self.step, "totals": dict(self.totals),
                "rows": [dict(row) for row in self.rows]}

    @classmethod
    def from_dict(cls, state: dict[str, Any]) -> Progress:
        return cls(int(state["epoch"]), int(state["batch"]), int(state["step"]), dict(state["totals"]),
                   [dict(row) for row in state["rows"]])


#: ``base.precision`` -> the autocast dtype of training's forward passes (None: float32 throughout)
AUTOCAST_DTYPES: dict[str, torch.dtype | None] = {"fp32": None, "bf16": torch.bfloat16}


def train_epoch(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    loader: DataLoader,
    step_fn: StepFn,
    *,
    epoch: int,
    epochs: int,
    progress: Progress,
    seed: int,
    margin: float,
    miner: str,
    device: torch.device,
    precision: str = "fp32",
    checkpoint_every: int | None = None,
    on_checkpoint: Callable[[Progress], None] | None = None,
    show_progress: bool = False,
) -> None:
    """Train on the epoch's batches from ``progress.batch`` on, updating ``progress`` in place.

    Batches before ``progress.batch`` (a resumed epoch) are loaded but not
    trained on: loading them again keeps every later batch's random crops and
    flips what they were in the uninterrupted run. Every ``checkpoint_every``
    global steps ``on_checkpoint(progress)`` is called.
    """
    dtype = AUTOCAST_DTYPES[precision]
    bar = progress_bar(loader, enabled=show_progress, desc=f"epoch {epoch + 1}/{epochs}", leave=False)
    for index, (images, labels) in enumerate(bar):
        if index < progress.batch:
            continue
        model.train()
        ctx = StepContext(epoch, epochs, progress.step, seeded_generator(seed, progress.step, 2), margin, miner,
                          total_steps=epochs * len(loader))
        with torch.autocast(device.type, dtype=dtype) if dtype is not None else contextlib.nullcontext():
            out = step_fn(model, images.to(device, non_blocking=True), labels.to(device, non_blocking=True), ctx)
        check_finite(out, epoch, progress.step)
        optimizer.zero_grad(set_to_none=True)
        out.loss.backward()
        optimizer.step()
        for key, value in {"loss": float(out.loss.detach()), **out.stats}.items():
            progress.totals[key] = progress.totals.get(key, 0.0) + value
        progress.batch += 1
        progress.step += 1
        bar.set_postfix(loss=f"{progress.totals['loss'] / progress.batch:.4f}")
        if on_checkpoint is not None and checkpoint_every and progress.step % checkpoint_every == 0:
            on_checkpoint(progress)


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
    precision: str = "fp32",
    resume: Progress | None = None,
    checkpoint_every: int | None = None,
    on_checkpoint: Callable[[Progress], None] | None = None,
) -> tuple[list[dict[str, float]], dict[str, int]]:
    """Train for ``epochs`` SPC-2 epochs; after each, log the step statistics and ``epoch_metrics(model)``.

    Everything random is a function of the seed and of where training stands
    (epoch, global step), never of how it got there: the sampler and the
    DataLoader's workers are seeded per epoch, torch's global RNG (augmentation
    in the main process) is reseeded at each epoch's start, and each step draws
    from a generator seeded by its global step. So a run resumed from a
    ``Progress`` (with the weights, optimiser and defense state saved with it)
    ends exactly as the uninterrupted run does.

    Args:
        precision: ``fp32``, or ``bf16`` for bfloat16 autocast of every forward
            pass of a training step (the inner PGD's too); weights, gradients and
            the optimiser stay float32.
        resume: where a previous run of the same training stopped (None: the start).
        checkpoint_every: call ``on_checkpoint`` every this many global steps,
            besides at each epoch's end (None: at each epoch's end only).
        on_checkpoint: receives the ``Progress`` whenever a resumable state should be saved.

    Returns:
        one log row per epoch, and the final training state (epoch, step).
    """
    sampler = SPC2Sampler(train_labels.numpy(), pairs_per_batch, seed)
    state = resume if resume is not None else Progress()
    for epoch in progress_bar(range(state.epoch, epochs), enabled=progress, desc="training"):
        torch.manual_seed(derive_seed(seed, epoch, 3))
        loader = make_loader(train_set, sampler, num_workers, seed, epoch, pin_memory=device.type == "cuda")
        train_epoch(
            model, optimizer, loader, step_fn, epoch=epoch, epochs=epochs, progress=state, seed=seed, margin=margin,
            miner=miner, device=device, precision=precision, checkpoint_every=checkpoint_every,
            on_checkpoint=on_checkpoint, show_progress=progress,
        )
        means = {key: value / max(state.batch, 1) for key, value in state.totals.items()}
        state.rows.append({"epoch": epoch + 1, "step": state.step, **means, **epoch_metrics(model)})
        state.epoch, state.batch, state.totals = epoch + 1, 0, {}
        if on_checkpoint is not None:
            on_checkpoint(state)
    return state.rows, {"epoch": epochs, "step": state.step}
