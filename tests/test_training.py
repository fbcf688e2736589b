"""The training loop: global step index, per-epoch log rows, seeding, model mode, the step context."""

import math

import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from catride_core.data.sampler import SPC2Sampler
from catride_core.models import Embedder
from catride_core.models.embedding import embed
from catride_core.progress import Progress
from catride_core.training import (
    StepContext,
    StepOutput,
    benign_step,
    fit,
    make_loader,
    train_epoch,
)

CPU = torch.device("cpu")
ITEMS, CLASSES, PAIRS_PER_BATCH = 32, 8, 4
STEPS_PER_EPOCH = 8  # every item is an anchor once an epoch: 32 anchors in batches of 4 pairs


def tiny_model(seed: int = 0) -> Embedder:
    # BatchNorm so that a wrong mode during a step or in embed() would change the numbers
    torch.manual_seed(seed)
    network = nn.Sequential(nn.Flatten(), nn.Linear(16, 12), nn.BatchNorm1d(12), nn.Tanh(), nn.Linear(12, 8))
    return Embedder(network, "tiny", 8, image_size=4, channels=1)


def dataset() -> tuple[TensorDataset, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    labels = torch.arange(ITEMS) % CLASSES
    prototypes = torch.rand(CLASSES, 1, 4, 4, generator=g)
    images = (prototypes[labels] + 0.2 * torch.rand(ITEMS, 1, 4, 4, generator=g)).clamp(0, 1)
    return TensorDataset(images, labels), labels


class Recorder:
    """A benign step that records what the loop tells it."""

    def __init__(self) -> None:
        self.contexts: list[StepContext] = []
        self.modes: list[bool] = []
        self.draws: list[float] = []

    def __call__(self, model: nn.Module, images: torch.Tensor, labels: torch.Tensor, ctx: StepContext) -> StepOutput:
        self.contexts.append(ctx)
        self.modes.append(all(module.training for module in model.modules()))
        self.draws.append(float(torch.rand((), generator=torch.Generator().set_state(ctx.generator.get_state()))))
        out = benign_step(model, images, labels, ctx)
        out.stats["seen_step"] = float(ctx.step)
        return out


def run_fit(step_fn, *, seed: int = 0, epochs: int = 2, epoch_metrics=None, model: nn.Module | None = None):
    train_set, labels = dataset()
    model = model or tiny_model()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    rows, state = fit(
        model, optimizer, train_set, labels, step_fn, epoch_metrics or (lambda m: {}),
        epochs=epochs, pairs_per_batch=PAIRS_PER_BATCH, seed=seed, margin=0.2, miner="semihard", device=CPU,
    )
    return model, rows, state


def test_the_global_step_counts_over_epochs_and_each_epoch_logs_one_row():
    recorder = Recorder()
    _, rows, state = run_fit(recorder, epochs=3, epoch_metrics=lambda m: {"R@1": 50.0})
    assert state == {"epoch": 3, "step": 3 * STEPS_PER_EPOCH}
    assert [(row["epoch"], row["step"]) for row in rows] == [(e + 1, (e + 1) * STEPS_PER_EPOCH) for e in range(3)]
    assert all(math.isfinite(row["loss"]) and row["R@1"] == 50.0 for row in rows)
    # the step function's own statistic is averaged over its epoch: steps 8..15 -> 11.5
    assert rows[1]["seen_step"] == 11.5
    # every step is told its epoch, the global step index and the run's settings
    expected = [(epoch, epoch * STEPS_PER_EPOCH + i) for epoch in range(3) for i in range(STEPS_PER_EPOCH)]
    assert [(ctx.epoch, ctx.step) for ctx in recorder.contexts] == expected
    assert {(ctx.epochs, ctx.margin, ctx.miner) for ctx in recorder.contexts} == {(3, 0.2, "semihard")}


def test_train_epoch_starts_at_the_given_step_and_averages_the_statistics():
    train_set, labels = dataset()
    model = tiny_model()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    loader = make_loader(train_set, SPC2Sampler(labels.numpy(), PAIRS_PER_BATCH, 0), 0, 0, epoch=1)
    recorder = Recorder()
    progress = Progress(epoch=1, step=5)
    train_epoch(model, optimizer, loader, recorder, epoch=1, epochs=2, progress=progress, seed=0, margin=0.2,
                miner="random", device=CPU)
    assert progress.step == 5 + STEPS_PER_EPOCH and progress.batch == STEPS_PER_EPOCH
    assert [ctx.step for ctx in recorder.contexts] == list(range(5, 5 + STEPS_PER_EPOCH))
    assert progress.totals["seen_step"] / progress.batch == pytest.approx(8.5)  # mean of steps 5..12


def test_each_step_draws_from_its_own_generator():
    first, second = Recorder(), Recorder()
    run_fit(first)
    run_fit(second)
    assert first.draws == second.draws  # seeded by (seed, step): the same on every run
    assert len(set(first.draws)) == len(first.draws)  # and a fresh stream each step
    other = Recorder()
    run_fit(other, seed=1)
    assert other.draws != first.draws


def test_same_seed_same_weights_and_log():
    model_a, rows_a, _ = run_fit(benign_step)
    model_b, rows_b, _ = run_fit(benign_step)
    assert rows_a == rows_b
    assert all(torch.equal(x, y) for x, y in zip(model_a.state_dict().values(), model_b.state_dict().values()))
    # the seed of the run (batches, partners, miner), not only the initial weights, decides the result
    model_c, _, _ = run_fit(benign_step, seed=1)
    assert not all(torch.equal(x, y) for x, y in zip(model_a.state_dict().values(), model_c.state_dict().values()))


def test_steps_run_in_train_mode_and_the_model_is_left_in_it():
    # the epoch metric embeds in eval mode; the next step must still train in train mode
    recorder = Recorder()
    train_set, _ = dataset()
    model, _, _ = run_fit(recorder, epoch_metrics=lambda m: {"norm": float(embed(m, train_set, 10).norm())})
    assert recorder.modes == [True] * (2 * STEPS_PER_EPOCH)
    assert all(module.training for module in model.modules())
    # and a model handed over in eval mode trains in train mode all the same
    evaluated = tiny_model().eval()
    recorder = Recorder()
    run_fit(recorder, model=evaluated)
    assert recorder.modes == [True] * (2 * STEPS_PER_EPOCH) and evaluated.training


def test_each_items_random_transform_depends_on_its_place_not_on_the_process_or_worker():
    from catride_core.distributed import World
    from catride_core.training import RankBatches

    class Jittered(torch.utils.data.Dataset):
        """Items whose value is a random draw of torch's global RNG, as a random crop is."""

        def __len__(self):
            return ITEMS

        def __getitem__(self, index):
            return torch.rand(1, 4, 4), int(index % CLASSES)

    _, labels = dataset()
    sampler = SPC2Sampler(labels.numpy(), 5, 0)  # batches of 5 pairs: shares of 2 and 3 pairs

    def batches(world, workers):
        return [images for images, _ in make_loader(Jittered(), sampler, workers, 0, epoch=2, world=world)]

    one = batches(World(), 0)
    assert all(torch.equal(a, b) for a, b in zip(one, batches(World(), 2), strict=True))  # workers change nothing
    shares = [batches(World(rank, 2), 0) for rank in range(2)]
    assert all(torch.equal(torch.cat([first, second]), whole)
               for first, second, whole in zip(*shares, one, strict=True))
    assert [len(b) for b in shares[0]][:1] == [4] and [len(b) for b in shares[1]][:1] == [6]
    # another epoch draws other transforms; the global RNG is left as it was
    state = torch.get_rng_state()
    other = [images for images, _ in make_loader(Jittered(), sampler, 0, 0, epoch=3)]
    assert not torch.equal(other[0], one[0]) and torch.equal(torch.get_rng_state(), state)
    assert len(RankBatches(sampler, 0, 2, World(1, 2))) == len(sampler)
