"""One training loop for benign pretraining and adversarial fine-tuning.

A step function turns one SPC-2 batch into a loss; benign pretraining uses
``benign_step``, and each defense provides its own (``catride_core.defenses``).
The loop owns the explicit training state: the epoch, the global step index
(CA-TRIDE's CAP/ANP alternation is a function of it) and per-epoch seeds for
the sampler and the miner, so a resumed or multi-process run sees the same
sequence.

Under torchrun (README "Several processes") every process reads and decodes
only its share of each global batch's pairs (``RankBatches``) and gathers the
others' images from them (a tensor exchange, far cheaper than decoding), then
computes on its share (``own_rows``, ``own_triplets``): a process needs the
global batch because its triplets' negatives and the items it mines among may
be any of them. Each item's random crop and flip is drawn from a seed of its
place in the global batch (``SeededItems``), so it does not depend on which
process or worker reads it. The embeddings a loss is made of are gathered with gradient
(``gather_rows``, ``gather_triplets``), so every process computes the loss of
the global batch, the objective of one process. The training forward pass goes
through the step's ``replica`` (DistributedDataParallel), everything else
through the plain model. In one process every helper here is the identity and
the code is the single-process code, operation for operation.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset, Sampler

from catride_core.data.sampler import SPC2Sampler
from catride_core.distributed import World
from catride_core.errors import TrainingError
from catride_core.losses import mine_triplets, triplet_loss
from catride_core.models import trains_batchnorm
from catride_core.models.embedding import embed
from catride_core.progress import Progress
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
    world: World = field(default_factory=World)  # the processes sharing each batch
    replica: nn.Module | None = None  # the DistributedDataParallel wrapper of the model (None: one process)

    def trained(self, model: nn.Module) -> nn.Module:
        """What the step's one training forward pass (the one whose loss is back-propagated) runs through.

        Under torchrun the DDP replica, whose backward averages the gradients
        over the processes; every other forward pass of a step (mining, the
        inner PGD, a second training pass) runs on the plain ``model``, so that
        DDP sees one forward pass per backward and no inner-PGD gradient is all-reduced.
        """
        return model if self.replica is None else self.replica


@dataclass
class StepOutput:
    """A step's loss (with gradient) and scalar statistics for the log."""

    loss: Tensor
    stats: dict[str, float] = field(default_factory=dict)


StepFn = Callable[[nn.Module, Tensor, Tensor, StepContext], StepOutput]


def own_rows(batch: Tensor, ctx: StepContext) -> Tensor:
    """This process's rows of a global SPC-2 batch (or of anything with one row per batch item): its pairs' rows.

    Shape:
        batch: (2P, ...) -> (2 P_rank, ...)
    """
    if ctx.world.size == 1:
        return batch
    share = ctx.world.pair_shares(batch.shape[0] // 2)[ctx.world.rank]
    return batch[2 * share.start : 2 * share.stop]


def gather_rows(rows: Tensor, ctx: StepContext, pairs: int) -> Tensor:
    """Every process's ``own_rows`` of a batch of ``pairs`` pairs, back in batch order, with gradient.

    Shape:
        rows: (2 P_rank, ...) -> (2P, ...)
    """
    return ctx.world.gather_shares(rows, [2 * len(share) for share in ctx.world.pair_shares(pairs)])


def own_triplets(indices: tuple[Tensor, Tensor, Tensor], ctx: StepContext) -> tuple[Tensor, Tensor, Tensor]:
    """This process's share of a batch's mined triplets: those of its pairs (the miner makes triplet i of pair i).

    Its negatives may be any item of the global batch, which every process holds.

    Shape:
        indices: 3 x (P,) -> 3 x (P_rank,)
    """
    if ctx.world.size == 1:
        return indices
    share = ctx.world.pair_shares(indices[0].shape[0])[ctx.world.rank]
    anchors, positives, negatives = (index[share.start : share.stop] for index in indices)
    return anchors, positives, negatives


def gather_triplets(rows: Tensor, ctx: StepContext, triplets: int) -> Tensor:
    """Every process's rows of ``own_triplets`` (of a batch of ``triplets`` triplets), in batch order, with gradient.

    Shape:
        rows: (P_rank, ...) -> (P, ...)
    """
    return ctx.world.gather_shares(rows, [len(share) for share in ctx.world.pair_shares(triplets)])


def batch_embeddings(model: nn.Module, images: Tensor, ctx: StepContext) -> Tensor:
    """``embed(model, images)`` of the global batch (eval mode, no gradient), each process embedding its own rows.

    Shape:
        images: (2P, C, H, W) -> (2P, D)
    """
    if ctx.world.size == 1:
        return embed(model, images)
    return gather_rows(embed(model, own_rows(images, ctx)), ctx, images.shape[0] // 2)


def benign_step(model: nn.Module, images: Tensor, labels: Tensor, ctx: StepContext) -> StepOutput:
    """Triplet loss on clean images, negatives mined on the batch's own embeddings.

    Under torchrun each process embeds its pairs and mines from the gathered
    embeddings of the global batch, as one process does.

    Shape:
        images: (2P, C, H, W) laid out [a1, p1, a2, p2, ...]; labels: (2P,)
    """
    embeddings = gather_rows(ctx.trained(model)(own_rows(images, ctx)), ctx, images.shape[0] // 2)
    a, p, n = mine_triplets(embeddings.detach(), labels, ctx.miner, ctx.margin, ctx.generator, ctx.epoch, ctx.epochs)
    return StepOutput(triplet_loss(embeddings[a], embeddings[p], embeddings[n], ctx.margin))


class RankBatches(Sampler[list[tuple[int, int]]]):
    """This process's rows of each global SPC-2 batch (its share of the pairs), each with its item seed.

    The rows of the process's pairs (``World.pair_shares``), in batch order;
    each item comes with a seed derived from (seed, epoch, batch, row in the
    global batch), the same whichever process reads it. One process: every row.

    Shape:
        yields [(dataset index, item seed), ...] of 2 P_rank items per global batch
    """

    def __init__(self, sampler: SPC2Sampler, seed: int, epoch: int, world: World) -> None:
        self.sampler, self.seed, self.epoch, self.world = sampler, seed, epoch, world

    def __len__(self) -> int:
        return len(self.sampler)

    def __iter__(self):
        self.sampler.set_epoch(self.epoch)
        for number, batch in enumerate(self.sampler):
            seeds = np.random.SeedSequence([self.seed, self.epoch, number, 4]).generate_state(len(batch), np.uint32)
            share = self.world.pair_shares(len(batch) // 2)[self.world.rank]
            rows = range(2 * share.start, 2 * share.stop)
            yield [(batch[row], int(seeds[row])) for row in rows]


class SeededItems(Dataset):
    """A dataset read by (index, seed): each item's random transforms draw from that seed.

    The item is read with torch's global RNG seeded from ``seed`` and restored
    afterwards, so its random crop and flip depend on the seed alone, not on
    the worker, the process or what was read before it.
    """

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: tuple[int, int]):
        index, seed = key
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return self.dataset[index]


def make_loader(
    dataset: Dataset,
    sampler: SPC2Sampler,
    num_workers: int,
    seed: int,
    epoch: int,
    pin_memory: bool = False,
    world: World | None = None,
) -> DataLoader:
    """The epoch's SPC-2 DataLoader of this process's share of each batch (``RankBatches``, ``SeededItems``)."""
    return DataLoader(
        SeededItems(dataset),
        batch_sampler=RankBatches(sampler, seed, epoch, world or World()),
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


#: the default of ``fit`` and ``train_epoch``: training without torchrun
ONE_PROCESS = World()

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
    world: World = ONE_PROCESS,
    replica: nn.Module | None = None,
) -> None:
    """Train on the epoch's batches from ``progress.batch`` on, updating ``progress`` in place.

    Batches before ``progress.batch`` (a resumed epoch) are loaded but not
    trained on (each item's crops and flips come from its own seed, so the
    later batches are those of the uninterrupted run either way). Every ``checkpoint_every``
    global steps ``on_checkpoint(progress)`` is called. Under torchrun
    ``replica`` is the model's DistributedDataParallel wrapper (``fit`` makes it).
    """
    dtype = AUTOCAST_DTYPES[precision]
    bar = progress_bar(loader, enabled=show_progress, desc=f"epoch {epoch + 1}/{epochs}", leave=False)
    for index, (images, labels) in enumerate(bar):
        if index < progress.batch:
            continue
        model.train()
        ctx = StepContext(epoch, epochs, progress.step, seeded_generator(seed, progress.step, 2), margin, miner,
                          total_steps=epochs * len(loader), world=world, replica=replica)
        images, labels = images.to(device, non_blocking=True), labels.to(device, non_blocking=True)
        if world.size > 1:
            # this process read its share; the step needs the global batch (negatives, mining)
            images, labels = world.gather(images), world.gather(labels)
        with torch.autocast(device.type, dtype=dtype) if dtype is not None else contextlib.nullcontext():
            out = step_fn(model, images, labels, ctx)
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
    world: World = ONE_PROCESS,
) -> tuple[list[dict[str, float]], dict[str, int]]:
    """Train for ``epochs`` SPC-2 epochs; after each, log the step statistics and ``epoch_metrics(model)``.

    Everything random is a function of the seed and of where training stands
    (epoch, global step), never of how it got there: the sampler is seeded per
    epoch, each item's random crop and flip by its place in the global batch
    (``RankBatches``), torch's global RNG is reseeded at each epoch's start,
    and each step draws from a generator seeded by its global step. So a run resumed from a
    ``Progress`` (with the weights, optimiser and defense state saved with it)
    ends exactly as the uninterrupted run does.

    Args:
        precision: ``fp32``, or ``bf16`` for bfloat16 autocast of every forward
            pass of a training step (the inner PGD's too); weights, gradients and
            the optimiser stay float32.
        resume: where a previous run of the same training stopped (None: the start).
        checkpoint_every: call ``on_checkpoint`` every this many global steps,
            besides at each epoch's end (None: at each epoch's end only).
        on_checkpoint: receives the ``Progress`` whenever a resumable state should be saved
            (on rank 0 only, under torchrun).
        world: the processes sharing each batch (README "Several processes"):
            every process draws the same global batches of ``pairs_per_batch``
            pairs, reads its share of their pairs, gathers the rest and
            computes on its share; the model trains as
            a DistributedDataParallel replica. Every process calls
            ``epoch_metrics`` (which may share its work through the world);
            only rank 0's log rows are meant to be written.

    Returns:
        one log row per epoch, and the final training state (epoch, step).

    Raises:
        TrainingError: under torchrun, a batch would leave a process without a
            pair, or the processes' models ended up different.
    """
    sampler = SPC2Sampler(train_labels.numpy(), pairs_per_batch, seed)
    smallest = len(train_labels) % pairs_per_batch or pairs_per_batch
    if smallest < world.size:
        raise TrainingError(f"the last batch of an epoch holds {smallest} SPC-2 pairs, fewer than the {world.size} "
                            "processes sharing it; choose a pairs_per_batch that leaves more, or fewer processes")
    # buffers are synced from rank 0 at each forward pass only where BatchNorm trains (finetune.<model>.train_batchnorm):
    # frozen, as by default (models/resnet.py), no buffer changes in training
    replica = (DistributedDataParallel(model, forward_sync_buffers=trains_batchnorm(model))
               if world.size > 1 else None)
    save = on_checkpoint if world.is_main else None
    state = resume if resume is not None else Progress()
    for epoch in progress_bar(range(state.epoch, epochs), enabled=progress and world.is_main, desc="training"):
        torch.manual_seed(derive_seed(seed, epoch, 3))
        loader = make_loader(train_set, sampler, num_workers, seed, epoch, pin_memory=device.type == "cuda",
                             world=world)
        train_epoch(
            model, optimizer, loader, step_fn, epoch=epoch, epochs=epochs, progress=state, seed=seed, margin=margin,
            miner=miner, device=device, precision=precision, checkpoint_every=checkpoint_every,
            on_checkpoint=save, show_progress=progress and world.is_main, world=world, replica=replica,
        )
        means = {key: value / max(state.batch, 1) for key, value in state.totals.items()}
        state.rows.append({"epoch": epoch + 1, "step": state.step, **means, **epoch_metrics(model)})
        state.epoch, state.batch, state.totals = epoch + 1, 0, {}
        if save is not None:
            save(state)
    diverged = world.diverged(model)
    if diverged:
        raise TrainingError(f"the {world.size} processes ended training with different weights "
                            f"({', '.join(diverged[:3])}); nothing was written")
    return state.rows, {"epoch": epochs, "step": state.step}
