"""The GPU benchmark, in one command: training steps, attacks and the paper's run times on CUB-sized input.

Generated data at the paper's size: ResNet-18 (random initialisation, frozen
BatchNorm) on 224 px images in [0, 1], SPC-2 batches of ``--pairs-per-batch``
pairs (56 = 112 images), a test gallery of ``--gallery`` images (CUB: 5,924).
Input loading is not included (the tensors are generated on the device):
``benchmarks/input_pipeline.py`` measures it. Everything runs through the
project's code:

- training steps, each one ``training.train_epoch`` over a single batch (so
  exactly the pipeline's step: autocast, the step function, the finiteness
  check, backward, Adam), in each ``base.precision`` (fp32, and bf16
  autocast on CUDA and CPU alike): a benign step (``training.benign_step``),
  a CA-TRIDE CAP step and an ANP step (global steps of even and odd index),
  and an ACT step, the defenses built by ``defenses.build_defense`` from the
  CUB preset's finetune settings (eps 8/255, step 1/255, ``--inner-steps``
  16) with the early stop and the ramp off, so that every inner step is paid
  at full step size (an upper bound). Median of ``--repeats`` steps after
  ``--warmup`` steps; ``torch.cuda.synchronize`` around each. Peak GPU memory
  per row;
- embedding (forward only, eval mode) of the gallery, fp32 and bf16;
- each of the nine attacks alone (``attacks.runner.run_attacks``, fp32,
  eps 8/255, step 3/255, ``--attack-steps`` 32, ``--attack-batch`` queries at
  once) on the first ``--queries`` gallery images; queries/s leaves out the
  gallery embedding every run starts with;
- projections: a 75-epoch CUB CA-TRIDE fine-tuning (ceil(5864 / P) steps an
  epoch, CAP and ANP alternating, the test set embedded after every epoch; the
  default ``progress`` ramp makes no epoch benign), and a full
  CUB evaluation (the benign evaluation's and the attack stage's embedding of
  the 5,924 test images, and the nine attacks on every one of them);
- whether the pipeline's determinism setting (``torch.use_deterministic_algorithms(True)``,
  ``runtime.seed_everything``) lets a training step run on this device.

Usage::

    python benchmarks/gpu.py            # the full benchmark (a few minutes on one H100 / H200)
    python benchmarks/gpu.py --tiny     # CPU smoke run: 2 pairs, 1 inner and 1 attack step, 8 queries

Prints markdown tables; asserts nothing.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import statistics
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from catride_core.attacks.base import AttackBudget
from catride_core.attacks.runner import run_attacks
from catride_core.config import CATrideParams, EvaluateParams, FinetuneParams
from catride_core.defenses import build_defense, training_miner
from catride_core.models import build_model
from catride_core.models.embedding import embed
from catride_core.names import ATTACKS
from catride_core.runtime import resolve_device, seed_everything
from catride_core.training import (
    AUTOCAST_DTYPES,
    Progress,
    StepFn,
    benign_step,
    train_epoch,
)

CUB_TRAIN_IMAGES = 5864
CUB_TEST_IMAGES = 5924
EPOCHS = 75
MARGIN = 0.2
PRECISIONS = tuple(AUTOCAST_DTYPES)
#: benchmarked step -> (defense name or None for benign, parity of its global step index)
STEPS: dict[str, tuple[str | None, int]] = {
    "benign": (None, 0),
    "CA-TRIDE CAP": ("ca_tride", 0),
    "CA-TRIDE ANP": ("ca_tride", 1),
    "ACT": ("act", 0),
}


@dataclass(frozen=True)
class Sizes:
    pairs_per_batch: int
    inner_steps: int
    warmup: int
    repeats: int
    attack_steps: int
    attack_batch: int
    queries: int
    gallery: int
    embed_batch: int


#: the CPU smoke run: every row once, as small as 224 px allows (35-55 s of CPU time on 2 cores)
TINY = Sizes(pairs_per_batch=2, inner_steps=1, warmup=0, repeats=1, attack_steps=1, attack_batch=8, queries=8,
             gallery=8, embed_batch=8)


def parse_args() -> tuple[argparse.Namespace, Sizes]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    parser.add_argument("--tiny", action="store_true", help="CPU smoke run at 224 px (overrides the sizes below)")
    parser.add_argument("--pairs-per-batch", type=int, default=56, help="P of SPC-2 (a batch holds 2P images)")
    parser.add_argument("--inner-steps", type=int, default=16, help="inner PGD steps of the defenses")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps before each timed row")
    parser.add_argument("--repeats", type=int, default=7, help="timed steps per row (the median is printed)")
    parser.add_argument("--attack-steps", type=int, default=32)
    parser.add_argument("--attack-batch", type=int, default=64, help="queries attacked at once (CUB preset: 64)")
    parser.add_argument("--queries", type=int, default=256, help="attacked queries per attack")
    parser.add_argument("--gallery", type=int, default=CUB_TEST_IMAGES, help="test images generated (the gallery)")
    parser.add_argument("--embed-batch", type=int, default=256, help="images embedded at once (CUB preset: 256)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    sizes = TINY if args.tiny else Sizes(
        args.pairs_per_batch, args.inner_steps, args.warmup, args.repeats, args.attack_steps, args.attack_batch,
        min(args.queries, args.gallery), args.gallery, args.embed_batch,
    )
    return args, sizes


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """The autocast of ``base.precision`` (as training applies it), for the embedding rows."""
    dtype = AUTOCAST_DTYPES[precision]
    return torch.autocast(device.type, dtype=dtype) if dtype is not None else contextlib.nullcontext()


def seconds(run: Callable[[], Any], device: torch.device) -> tuple[float, Any]:
    """Wall time of one call, the device synchronised before and after, and what it returned."""
    synchronize(device)
    start = time.perf_counter()
    result = run()
    synchronize(device)
    return time.perf_counter() - start, result


def median_seconds(run: Callable[[], Any], device: torch.device, warmup: int, repeats: int) -> tuple[float, Any]:
    """Median wall time of ``repeats`` calls after ``warmup`` calls, and what the last call returned."""
    for _ in range(warmup):
        run()
    timed = [seconds(run, device) for _ in range(max(repeats, 1))]
    return statistics.median(taken for taken, _ in timed), timed[-1][1]


@contextlib.contextmanager
def peak_memory(device: torch.device) -> Iterator[list[str]]:
    """Yields a list that holds, after the block, the block's peak GPU memory ("n/a" on CPU)."""
    found: list[str] = []
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    yield found
    found.append(f"{torch.cuda.max_memory_allocated(device) / 2**30:.1f} GiB" if device.type == "cuda" else "n/a")


def finetune_settings(inner_steps: int) -> FinetuneParams:
    """The CUB preset's finetune section, early stop and ramp off (every inner step is paid at full size)."""
    return FinetuneParams(
        pairs_per_batch=56, lr=1e-5, weight_decay=4e-4, eps=8 / 255, step_size=1 / 255, steps=inner_steps,
        ca_tride=CATrideParams(ramp="off", stop_below=None),
    )


def training_step(
    step_fn: StepFn, miner: str, model: nn.Module, optimizer: torch.optim.Optimizer, images: Tensor, labels: Tensor,
    device: torch.device, precision: str, seed: int, parity: int,
) -> Callable[[], dict[str, float]]:
    """The pipeline's training step on one batch (``train_epoch`` over it), each call at the next global step
    of ``parity``; a call returns the step's statistics."""
    counter = iter(range(parity, 1 << 30, 2))

    def run() -> dict[str, float]:
        progress = Progress(epoch=1, step=next(counter))
        train_epoch(model, optimizer, [(images, labels)], step_fn, epoch=1, epochs=2, progress=progress, seed=seed,
                    margin=MARGIN, miner=miner, device=device, precision=precision)
        return progress.totals

    return run


def spc2_batch(pairs: int, device: torch.device, seed: int) -> tuple[Tensor, Tensor]:
    """2P random images laid out [a1, p1, a2, p2, ...], the pairs of distinct classes."""
    generator = torch.Generator().manual_seed(seed)
    images = torch.rand(2 * pairs, 3, 224, 224, generator=generator)
    labels = torch.randperm(max(100, pairs), generator=generator)[:pairs].repeat_interleave(2)
    return images.to(device), labels.to(device)


def time_steps(model, images, labels, sizes, device, seed) -> dict[tuple[str, str], dict[str, object]]:
    """Every row of the step table: (step, precision) -> seconds, inner PGD steps, peak memory."""
    cfg = finetune_settings(sizes.inner_steps)
    lam = EvaluateParams().diagnostic_inverse_temperature
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    rows = {}
    for precision in PRECISIONS:
        for name, (defense, parity) in STEPS.items():
            step_fn = benign_step if defense is None else build_defense(defense, cfg, lam)
            miner = "gradual_semihard" if defense is None else training_miner(defense, cfg)
            run = training_step(step_fn, miner, model, optimizer, images, labels, device, precision, seed, parity)
            with peak_memory(device) as memory:
                median, stats = median_seconds(run, device, sizes.warmup, sizes.repeats)
            rows[name, precision] = {"seconds": median, "pgd_steps": stats.get("pgd_steps"), "memory": memory[0]}
    return rows


def time_embedding(model, gallery, sizes, device) -> dict[str, float]:
    """Seconds to embed the whole gallery (eval mode, no gradient), per precision."""
    times = {}
    for precision in PRECISIONS:
        with autocast(device, precision):
            times[precision], _ = median_seconds(
                lambda: embed(model, gallery, batch_size=sizes.embed_batch), device, min(sizes.warmup, 1),
                max(1, sizes.repeats // 3))
    return times


def time_attacks(model, gallery, labels, sizes, device, seed, embed_seconds) -> dict[str, float]:
    """Attack -> seconds for ``sizes.queries`` queries, the gallery embedding every run starts with left out."""
    budget = AttackBudget(eps=8 / 255, step_size=3 / 255, steps=sizes.attack_steps, batch_size=sizes.attack_batch)

    def attack(name: str, queries: int) -> Callable[[], object]:
        return lambda: run_attacks([name], model, gallery, labels, budget, seed, max_queries=queries)

    if sizes.warmup:
        attack(ATTACKS[0], sizes.attack_batch)()
    return {name: max(seconds(attack(name, sizes.queries), device)[0] - embed_seconds, 1e-9) for name in ATTACKS}


def check_determinism(model, images, labels, device, seed) -> str:
    """Whether one benign step runs under the pipeline's ``runtime.seed_everything`` (deterministic algorithms)."""
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-5)
    run = training_step(benign_step, "gradual_semihard", model, optimizer, images, labels, device, "fp32", seed, 0)
    seed_everything(seed, device)
    try:
        run()
        return "a training step runs"
    except RuntimeError as exc:
        return f"a training step fails: {str(exc).splitlines()[0]}"
    finally:
        torch.use_deterministic_algorithms(False)


def minutes(value: float) -> str:
    return f"{value / 60:,.1f} min" if value < 3 * 3600 else f"{value / 3600:,.1f} h"


def main() -> None:
    args, sizes = parse_args()
    device = resolve_device("cpu" if args.tiny and args.device == "auto" else args.device)
    torch.manual_seed(args.seed)
    model = build_model("resnet18", 512).to(device)
    images, labels = spc2_batch(sizes.pairs_per_batch, device, args.seed)
    generator = torch.Generator().manual_seed(args.seed + 1)
    gallery = torch.rand(sizes.gallery, 3, 224, 224, generator=generator).to(device)
    gallery_labels = torch.arange(sizes.gallery, device=device) % 100

    steps = time_steps(model, images, labels, sizes, device, args.seed)
    embedding = time_embedding(model, gallery, sizes, device)
    attacks = time_attacks(model, gallery, gallery_labels, sizes, device, args.seed, embedding["fp32"])
    determinism = check_determinism(model, images, labels, device, args.seed)

    where = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    batch = 2 * sizes.pairs_per_batch
    print(f"device {device} ({where}), torch {torch.__version__}, ResNet-18 at 224 px, batch {batch} images "
          f"({sizes.pairs_per_batch} SPC-2 pairs), {sizes.inner_steps} inner PGD steps, "
          f"median of {sizes.repeats} steps after {sizes.warmup} warm-up" + (" (--tiny)" if args.tiny else "") + "\n")
    print("| step | precision | step time | images/s | inner PGD steps | peak GPU memory |")
    print("|---|---|---|---|---|---|")
    for (name, precision), row in steps.items():
        inner = "-" if row["pgd_steps"] is None else f"{row['pgd_steps']:.0f}"
        print(f"| {name} | {precision} | {row['seconds']:.3f} s | {batch / row['seconds']:,.1f} | {inner} "
              f"| {row['memory']} |")
    print(f"\nembedding {sizes.gallery} images (eval, batch {sizes.embed_batch}): "
          + ", ".join(f"{p} {embedding[p]:.2f} s ({sizes.gallery / embedding[p]:,.0f} images/s)" for p in PRECISIONS))

    print(f"\n| attack | seconds ({sizes.queries} queries) | queries/s |")
    print("|---|---|---|")
    for name, taken in attacks.items():
        print(f"| {name} | {taken:.2f} | {sizes.queries / taken:,.1f} |")
    print(f"\n(fp32; gallery {sizes.gallery} images, eps 8/255, step 3/255, {sizes.attack_steps} steps, "
          f"{sizes.attack_batch} queries at once; each run's gallery embedding, {embedding['fp32']:.2f} s, left out)")

    steps_per_epoch = math.ceil(CUB_TRAIN_IMAGES / sizes.pairs_per_batch)
    test_embedding = {p: embedding[p] * CUB_TEST_IMAGES / sizes.gallery for p in PRECISIONS}
    finetune = {
        p: EPOCHS * (steps_per_epoch * (steps["CA-TRIDE CAP", p]["seconds"] + steps["CA-TRIDE ANP", p]["seconds"]) / 2
                     + test_embedding[p])
        for p in PRECISIONS
    }
    evaluation = 2 * test_embedding["fp32"] + sum(CUB_TEST_IMAGES * taken / sizes.queries for taken in attacks.values())
    print("\n| projection | fp32 | bf16 |")
    print("|---|---|---|")
    print(f"| CUB CA-TRIDE fine-tuning: {EPOCHS} epochs x {steps_per_epoch} steps, test set embedded per epoch "
          f"| {minutes(finetune['fp32'])} | {minutes(finetune['bf16'])} |")
    print(f"| CUB evaluation: {CUB_TEST_IMAGES} test images embedded twice, nine attacks on each "
          f"| {minutes(evaluation)} | (attacks in fp32 only) |")
    print(f"\npipeline determinism (torch.use_deterministic_algorithms(True)) on {device.type}: {determinism}")


if __name__ == "__main__":
    main()
