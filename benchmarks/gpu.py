"""The GPU benchmark, in one command: determinism, training steps, evaluation, attacks, DDP and the paper's run times.

The one script to run when a GPU is lent. It sets the device up as every
pipeline stage does (``commands.common.start``): ``runtime.resolve_device``
(``--device cuda``, the default, is an error naming torch's reason where CUDA
is not usable), ``runtime.configure_backends(False)`` (deterministic IEEE
fp32: no TF32, ``cudnn.benchmark`` off) and ``runtime.seed_everything``
(strict ``torch.use_deterministic_algorithms``), and prints
``runtime.device_line`` first. Everything then runs through the project's
code on generated data at the published protocols' sizes, read from
``presets/cub.yaml`` (ResNet-18, random initialisation, 224 px, SPC-2
batches of 56 pairs, EST/ACT/HM 32 and TRIDE/CA-TRIDE 16 inner PGD steps, a
5,924-image test set, CUB's) and ``presets/fashion.yaml`` (c2f2 at 28 px,
128 pairs, a 10,000-image test set). Input decoding is not included
(``benchmarks/input_pipeline.py`` measures it). In order, each printed as a
markdown row the moment it is measured (and appended to ``--out``, a CSV, if
given), so a run cut off by a time limit keeps every figure it reached:

1. determinism, per part: every training step kind (benign ``none``, EST,
   ACT, HM, TRIDE CAP and ANP, CA-TRIDE CAP and ANP, in each precision of the
   part) run twice from the same weights and seed under the strict mode,
   reported as bit-identical (loss and every weight and buffer) or not; an op
   without a deterministic kernel raises, and its name is printed with every
   other such op of that step (found by running it once more with
   ``warn_only``). Every attack likewise, twice on one batch of queries (2
   PGD steps), its per-query results compared. This settles
   ``runtime.CUDA_NONDETERMINISTIC_EXEMPTIONS``;
2. per part, training steps: ``training.train_epoch`` over one batch (the
   pipeline's step: autocast, the step of ``defenses.build_defense``, the
   finiteness check, backward, Adam) for every step kind, in fp32 (IEEE on
   CUDA) and, for CUB, bf16 autocast; the early stops of HM and CA-TRIDE and
   the step-size ramps off, so every inner step is paid at full size (an
   upper bound). Median of ``--repeats`` after ``--warmup``,
   ``torch.cuda.synchronize`` around each;
3. per part, the test set: its embedding at the attack batch size (what
   every attack run starts with), the per-epoch evaluation of fine-tuning
   (``retrieval.evaluation.epoch_metrics``) and the evaluate stage's metrics
   (``benign_metrics``), both reading the test set from host memory as a
   Dataset, as the stages do;
4. per part, each attack of the preset (the nine of ERS and gtm_ref, es_ref,
   ltm_ref) alone, ``attacks.runner.run_attacks`` in fp32 on the first
   ``--attack-batches`` batches of queries; queries/s leave out the gallery
   embedding each run starts with;
5. projections from the measured throughput (``fashion_table.project_row``):
   the paper's 75-epoch CA-TRIDE fine-tuning of CUB, CARS and SOP (ceil(train
   images / 56) steps an epoch, CAP and ANP alternating, the test set
   evaluated after every epoch) and their evaluation (the evaluate stage, then
   the twelve attacks on every test image), the test-set figures scaled
   linearly from CUB's size; and each of the six rows of the Fashion-MNIST
   table (8 epochs of 469 steps from initialisation, 10,000 queries);
6. a 2-process DDP row (``torch.distributed``, NCCL, one GPU a process; what
   ``training.fit`` builds: a ``distributed.World`` and a
   ``DistributedDataParallel`` replica) timing one CA-TRIDE CAP step of the
   global batch, and whether both processes end with the same weights;
   skipped, saying why, with fewer than 2 GPUs. Under ``--tiny`` on the CPU it
   runs with gloo, a smoke run of the code path.

Every CUDA row prints its peak GPU memory (``torch.cuda.max_memory_allocated``
since a reset before the row); the CPU prints n/a. ``--cuda-fast`` adds rows
of steps, embedding, evaluation and attacks under ``base.cuda_fast``
(``configure_backends(True)``: TF32 and ``cudnn.benchmark``; the strict
deterministic mode stays on, as in the pipeline), so the speed cost of
deterministic IEEE fp32 is measured.

Usage::

    python benchmarks/gpu.py --cuda-fast --out gpu.csv   # the full benchmark on one GPU
    python benchmarks/gpu.py --tiny                      # CPU smoke run: every row at toy sizes (64 px ResNet, 1 step)

By the work it does the full run should take a few minutes on one H100 or
H200; it has not yet run on a GPU (docs/benchmarks.md, "GPU benchmark",
lists what the first run settles).

Asserts: exit status 0 when every row ran and every determinism check was
bit-identical (and the DDP processes agree), 1 when a row failed or a check
did not hold (the row says why), 2 when the device cannot be used (one line
on stderr, e.g. ``--device cuda`` without a usable GPU).
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import math
import os
import socket
import statistics
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel

from catride_core.attacks.base import AttackBudget
from catride_core.attacks.runner import run_attacks
from catride_core.config import (
    FinetuneParams,
    Params,
    parse_params,
    read_params_mapping,
)
from catride_core.data.prepared import TensorImageDataset
from catride_core.defenses import build_defense, training_miner
from catride_core.distributed import World
from catride_core.errors import ParamsError
from catride_core.models import build_model, set_batchnorm_training, trains_batchnorm
from catride_core.models.embedding import embed
from catride_core.retrieval.evaluation import benign_metrics, epoch_metrics
from catride_core.runtime import (
    configure_backends,
    cuda_status,
    device_line,
    resolve_device,
    seed_everything,
)
from catride_core.training import ONE_PROCESS, Progress, StepFn, train_epoch

REPO = Path(__file__).resolve().parents[1]
MARGIN = 0.2  # every preset's finetune.margin
#: dataset -> its name in the tables
DISPLAY = {"cub": "CUB", "cars": "CARS", "sop": "SOP", "fashion": "Fashion-MNIST"}
#: dataset -> (train images, test images) of the published splits (docs/datasets.md)
SPLITS = {"cub": (5864, 5924), "cars": (8054, 8131), "sop": (59551, 60502), "fashion": (60000, 10000)}
#: dataset -> classes of its test split (the generated labels)
TEST_CLASSES = {"cub": 100, "fashion": 10}
#: step kind -> (defense, parity of its global step index: TRIDE's CAP steps are even, ANP odd)
STEPS: dict[str, tuple[str, int]] = {
    "none (benign)": ("none", 0),
    "EST": ("est", 0),
    "ACT": ("act", 0),
    "HM": ("hm", 0),
    "TRIDE CAP": ("tride", 0),
    "TRIDE ANP": ("tride", 1),
    "CA-TRIDE CAP": ("ca_tride", 0),
    "CA-TRIDE ANP": ("ca_tride", 1),
}
#: defense -> the step kinds its training alternates (its step time is their mean)
DEFENSE_STEPS = {defense: [kind for kind, (name, _) in STEPS.items() if name == defense] for defense, _ in STEPS.values()}
CSV_COLUMNS = ("section", "row", "setting", "seconds", "per_second", "unit", "inner_pgd_steps", "peak_gpu_memory_gib",
               "note")
MEASURED = ("row", "setting", "seconds", "throughput", "PGD steps", "peak GPU memory", "note")
CHECKED = ("check", "setting", "result")
PROJECTED = ("projection", "setting", "fine-tuning", "evaluation and attacks", "total")


# --- the parts: a preset's protocol, and what is timed of it ---------------------------------------------------------


@dataclass(frozen=True)
class Part:
    """One preset's protocol and the sizes it is benchmarked at.

    Attributes:
        dataset: the preset (``cub``, ``fashion``).
        protocol: the preset laid over the defaults, as ``catride preset`` makes it (the projections' sizes).
        cfg: its finetune section as timed: early stops and ramps off (every inner step paid), reduced under --tiny.
        image_shape: (C, H, W) of the generated images.
        test_images: the generated test set (the gallery).
        queries: attacked queries per attack.
        attack_steps: PGD steps of the timed attacks.
        precisions: ``base.precision`` values timed.
        num_workers: DataLoader workers reading the test set (the preset's ``pretrain.num_workers``).
        warmup: untimed calls before each timed training-step row.
        repeats: timed calls of each training-step row (the median is printed).
    """

    dataset: str
    protocol: Params
    cfg: FinetuneParams
    image_shape: tuple[int, int, int]
    test_images: int
    queries: int
    attack_steps: int
    precisions: tuple[str, ...]
    num_workers: int
    warmup: int
    repeats: int

    @property
    def title(self) -> str:
        return f"{DISPLAY[self.dataset]} ({self.protocol.pretrain.arch}, {self.image_shape[1]} px)"

    @property
    def lam(self) -> float:
        return self.protocol.evaluate.diagnostic_inverse_temperature

    @property
    def classes(self) -> int:
        return min(TEST_CLASSES[self.dataset], self.test_images // 2)

    def budget(self, steps: int | None = None) -> AttackBudget:
        attack = self.protocol.attack
        return AttackBudget(eps=attack.eps, step_size=attack.step_size,
                            steps=self.attack_steps if steps is None else steps, random_start=attack.random_start,
                            batch_size=min(attack.batch_size, self.queries),
                            candidates_per_query=attack.candidates_per_query,
                            queries_per_candidate=attack.queries_per_candidate)


def load_part(dataset: str, args: argparse.Namespace) -> Part:
    """The part of ``presets/<dataset>.yaml`` (full size, or toy sizes under ``--tiny``)."""
    preset = REPO / "presets" / f"{dataset}.yaml"
    protocol = parse_params(read_params_mapping(preset), source=str(preset))
    finetune = protocol.finetune
    cfg = finetune.model_copy(update={
        "hm": finetune.hm.model_copy(update={"stop_change_below": 0.0}),
        "tride": finetune.tride.model_copy(update={"ramp": "off"}),
        "ca_tride": finetune.ca_tride.model_copy(update={"ramp": "off", "stop_below": None}),
    })
    size = 224 if protocol.pretrain.arch.startswith("resnet") else 28
    channels = 3 if size == 224 else 1
    part = Part(dataset, protocol, cfg, image_shape=(channels, size, size), test_images=SPLITS[dataset][1],
                queries=args.attack_batches * protocol.attack.batch_size, attack_steps=protocol.attack.steps,
                precisions=("fp32", "bf16") if size == 224 else (protocol.base.precision,),
                num_workers=min(protocol.pretrain.num_workers, os.cpu_count() or 1), warmup=args.warmup,
                repeats=args.repeats)
    if not args.tiny:
        return part
    # every row once at toy sizes: 2-4 pairs, 1 inner and 1 attack step, a 16-image test set, a 64 px ResNet
    tiny = {"pairs_per_batch": 2 if size == 224 else 4, "steps": 1}
    tiny |= {name: getattr(cfg, name).model_copy(update={"steps": 1}) for name in ("tride", "ca_tride")}
    return replace(part, cfg=cfg.model_copy(update=tiny), image_shape=(channels, min(size, 64), min(size, 64)),
                   test_images=16, queries=4, attack_steps=1, num_workers=0, warmup=0, repeats=1)


# --- printing every row as it comes ----------------------------------------------------------------------------------


@dataclass
class Table:
    """Prints markdown rows as they are measured and appends each to the CSV ``out`` (if any)."""

    out: Path | None
    began: float  # time.monotonic() at the start, for the elapsed time each section prints
    failures: list[str] = field(default_factory=list)

    def begin(self, title: str, columns: tuple[str, ...]) -> None:
        elapsed = time.monotonic() - self.began
        print(f"\n### {title} (from {elapsed:.0f} s)\n\n| " + " | ".join(columns) + " |\n|" + "---|" * len(columns),
              flush=True)

    def _write(self, **values: Any) -> None:
        print("| " + " | ".join(values.pop("cells")) + " |", flush=True)
        if self.out is None:
            return
        new = not self.out.exists()
        with self.out.open("a", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=CSV_COLUMNS)
            if new:
                writer.writeheader()
            writer.writerow(values)

    def measured(self, section: str, name: str, setting: str, seconds: float | None = None, count: float = 0,
                 unit: str = "", inner: float | None = None, memory: float | None = None, note: str = "") -> None:
        """A timed row: ``count`` ``unit`` in ``seconds`` (None: the row failed, ``note`` says why)."""
        rate = count / seconds if seconds else None
        if seconds is None:
            memory_cell = "-"
        else:
            memory_cell = "n/a" if memory is None else f"{memory:.2f} GiB"
        cells = [name, setting, "-" if seconds is None else f"{seconds:.3f} s",
                 "-" if rate is None else f"{rate:,.1f} {unit}", "-" if inner is None else f"{inner:.0f}", memory_cell,
                 note]
        self._write(cells=cells, section=section, row=name, setting=setting, seconds=seconds,
                    per_second=rate, unit=unit, inner_pgd_steps=inner, peak_gpu_memory_gib=memory, note=note)

    def checked(self, section: str, name: str, setting: str, result: str, ok: bool) -> None:
        if not ok:
            self.failures.append(f"{section}: {name} ({setting}): {result}")
        self._write(cells=[name, setting, result if ok else f"**{result}**"], section=section, row=name,
                    setting=setting, note=result)

    def failed(self, section: str, name: str, setting: str, exc: BaseException) -> None:
        reason = failure(exc)
        self.failures.append(f"{section}: {name} ({setting}): {reason}")
        self.measured(section, name, setting, note=f"**{reason}**")

    def projected(self, name: str, setting: str, training: float | None, evaluation: float | None) -> None:
        # imported here, not at the top: fashion_table imports this module
        from fashion_table import minutes

        total = None if training is None or evaluation is None else training + evaluation
        cells = [name, setting, *("-" if value is None else minutes(value) for value in (training, evaluation)),
                 "-" if total is None else f"**{minutes(total)}**"]
        note = "" if total is None else f"fine-tuning {training:.0f} s, evaluation and attacks {evaluation:.0f} s"
        self._write(cells=cells, section="projection", row=name, setting=setting, seconds=total, note=note)


# --- timing -----------------------------------------------------------------------------------------------------------


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


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
def peak_memory(device: torch.device) -> Iterator[list[float | None]]:
    """Yields a list that holds, after the block, the block's peak GPU memory in GiB (None on the CPU)."""
    found: list[float | None] = []
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    yield found
    found.append(torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None)


def measure(run: Callable[[], Any], device: torch.device, warmup: int, repeats: int
            ) -> tuple[float, Any, float | None]:
    """``median_seconds`` of ``run`` and the peak GPU memory of all its calls."""
    with peak_memory(device) as memory:
        taken, result = median_seconds(run, device, warmup, repeats)
    return taken, result, memory[0]


def training_step(
    step_fn: StepFn, miner: str, model: nn.Module, optimizer: torch.optim.Optimizer, images: Tensor, labels: Tensor,
    device: torch.device, precision: str, seed: int, parity: int, world: World = ONE_PROCESS,
    replica: nn.Module | None = None,
) -> Callable[[], dict[str, float]]:
    """The pipeline's training step on one batch (``train_epoch`` over it), each call at the next global step
    of ``parity``; a call returns the step's statistics."""
    counter = iter(range(parity, 1 << 30, 2))

    def run() -> dict[str, float]:
        progress = Progress(epoch=1, step=next(counter))
        train_epoch(model, optimizer, [(images, labels)], step_fn, epoch=1, epochs=2, progress=progress, seed=seed,
                    margin=MARGIN, miner=miner, device=device, precision=precision, world=world, replica=replica)
        return progress.totals

    return run


def part_step(part: Part, kind: str, model: nn.Module, batch: tuple[Tensor, Tensor], device: torch.device, seed: int,
              precision: str, world: World = ONE_PROCESS, replica: nn.Module | None = None
              ) -> Callable[[], dict[str, float]]:
    """Step kind ``kind`` of ``part`` as the finetune stage sets it up: its BatchNorm setting, a fresh Adam and defense."""
    defense, parity = STEPS[kind]
    cfg = part.cfg
    set_batchnorm_training(model, getattr(cfg, defense).train_batchnorm)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    step_fn = build_defense(defense, cfg, part.lam)
    return training_step(step_fn, training_miner(defense, cfg), model, optimizer, *batch, device, precision, seed,
                         parity, world, replica)


# --- generated data ---------------------------------------------------------------------------------------------------


def spc2_batch(part: Part, device: torch.device, seed: int) -> tuple[Tensor, Tensor]:
    """2P random images laid out [a1, p1, a2, p2, ...], pair i of class i mod (the test split's classes)."""
    generator = torch.Generator().manual_seed(seed)
    pairs = part.cfg.pairs_per_batch
    images = torch.rand(2 * pairs, *part.image_shape, generator=generator)
    labels = (torch.randperm(pairs, generator=generator) % TEST_CLASSES[part.dataset]).repeat_interleave(2)
    return images.to(device), labels.to(device)


def generated_test_set(part: Part, seed: int, n: int) -> TensorImageDataset:
    """``n`` random uint8 images in host memory, served as [0, 1] floats (as a prepared split is)."""
    generator = torch.Generator().manual_seed(seed + 1)
    images = torch.randint(0, 256, (n, *part.image_shape), dtype=torch.uint8, generator=generator)
    return TensorImageDataset(images.numpy(), np.arange(n) % part.classes)


# --- determinism -------------------------------------------------------------------------------------------------------

NOT_DETERMINISTIC = " does not have a deterministic implementation"


def nondeterministic_op(text: str) -> str | None:
    """The op named by ``use_deterministic_algorithms``' error or warning ``text`` (None: some other error)."""
    if NOT_DETERMINISTIC in text:
        return text.split(NOT_DETERMINISTIC)[0].split()[-1]
    if "CuBLAS" in text and "CUBLAS_WORKSPACE_CONFIG" in text:
        return "cuBLAS (CUBLAS_WORKSPACE_CONFIG not set before CUDA started)"
    return None


def failure(exc: BaseException) -> str:
    op = nondeterministic_op(str(exc))
    if op is not None:
        return f"raises under the strict deterministic mode: {op}"
    lines = str(exc).strip().splitlines() or [""]
    # a spawned process's exception arrives as its traceback, the message last
    line = lines[-1] if isinstance(exc, mp.ProcessRaisedException) else lines[0]
    return f"fails: {type(exc).__name__}: {line[:300]}"


def nondeterministic_ops(run: Callable[[], Any]) -> list[str]:
    """Every op without a deterministic kernel that ``run`` meets (the mode's warnings with ``warn_only``)."""
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            run()
    finally:
        torch.use_deterministic_algorithms(True)
    return sorted({op for warning in caught if (op := nondeterministic_op(str(warning.message)))})


def twice(run: Callable[[], Any], reset: Callable[[], None]) -> tuple[Any, Any]:
    """``run``'s results of two calls, each after ``reset``."""
    reset()
    first = run()
    reset()
    return first, run()


def check(table: Table, name: str, setting: str, run: Callable[[], Any], reset: Callable[[], None],
          differences: Callable[[Any, Any], str]) -> None:
    """Run twice under the strict mode; print bit-identical, what ``differences`` found, or the ops that raise."""
    try:
        first, second = twice(run, reset)
        found = differences(first, second)
        table.checked("determinism", name, setting, found or "runs; bit-identical twice", not found)
    except RuntimeError as exc:
        op = nondeterministic_op(str(exc))
        if op is None:
            table.checked("determinism", name, setting, failure(exc), False)
            return
        reset()
        others = [other for other in nondeterministic_ops(run) if other != op]
        also = f" (and {', '.join(others)})" if others else ""
        table.checked("determinism", name, setting, f"raises: {op}{also}", False)


def step_differences(first: tuple[float, dict[str, Tensor]], second: tuple[float, dict[str, Tensor]]) -> str:
    (loss_a, state_a), (loss_b, state_b) = first, second
    differing = [key for key in state_a if not torch.equal(state_a[key], state_b[key])]
    if loss_a == loss_b and not differing:
        return ""
    return (f"NOT bit-identical: loss {loss_a!r} vs {loss_b!r}, {len(differing)} of {len(state_a)} tensors differ"
            + (f" ({', '.join(differing[:3])} ...)" if differing else ""))


def check_steps(table: Table, part: Part, model: nn.Module, batch: tuple[Tensor, Tensor], device: torch.device,
                seed: int) -> None:
    """Every step kind in every precision of ``part``, twice from the same weights and seed."""
    start = {key: value.clone() for key, value in model.state_dict().items()}

    def reset() -> None:
        model.load_state_dict(start)

    for precision in part.precisions:
        for kind in STEPS:
            def run(kind: str = kind, precision: str = precision) -> tuple[float, dict[str, Tensor]]:
                totals = part_step(part, kind, model, batch, device, seed, precision)()
                return totals["loss"], {key: value.clone() for key, value in model.state_dict().items()}

            check(table, f"{part.dataset}: step {kind}", precision, run, reset, step_differences)
    reset()


def attack_differences(first: dict[str, np.ndarray], second: dict[str, np.ndarray]) -> str:
    differing = [key for key in first if not np.array_equal(first[key], second[key], equal_nan=True)]
    return f"NOT bit-identical: {', '.join(differing)} differ" if differing else ""


def check_attacks(table: Table, part: Part, model: nn.Module, gallery: Tensor, labels: Tensor, seed: int) -> None:
    """Every attack of ``part``, twice on one batch of queries (2 PGD steps) against ``gallery``."""
    budget = part.budget(steps=min(part.attack_steps, 2))
    for name in part.protocol.attack.names:
        def run(name: str = name) -> dict[str, np.ndarray]:
            return run_attacks([name], model, gallery, labels, budget, seed, max_queries=budget.batch_size)[name].per_query

        check(table, f"{part.dataset}: attack {name}", "fp32", run, lambda: None, attack_differences)


# --- timed rows ----------------------------------------------------------------------------------------------------------


def setting_name(precision: str, fast: bool) -> str:
    return precision + (" cuda_fast" if fast else "")


def attempt(table: Table, section: str, name: str, setting: str, run: Callable[[], Any], device: torch.device,
            warmup: int, repeats: int) -> tuple[float, Any, float | None] | None:
    """``measure(run)``, or None after printing the row as failed (an op without a deterministic kernel, memory ...)."""
    try:
        return measure(run, device, warmup, repeats)
    except RuntimeError as exc:
        table.failed(section, name, setting, exc)
        return None


def time_steps(table: Table, part: Part, model: nn.Module, batch: tuple[Tensor, Tensor], device: torch.device,
               seed: int, fast: bool) -> dict[tuple[str, str], float]:
    """(step kind, setting) -> median seconds of one step, every step kind in every precision of ``part``."""
    times = {}
    images = len(batch[0])
    for precision in part.precisions:
        setting = setting_name(precision, fast)
        for kind in STEPS:
            run = part_step(part, kind, model, batch, device, seed, precision)
            found = attempt(table, "steps", kind, setting, run, device, part.warmup, part.repeats)
            if found is not None:
                taken, stats, memory = found
                times[kind, setting] = taken
                table.measured("steps", kind, setting, taken, images, "images/s", stats.get("pgd_steps"), memory)
    return times


@dataclass
class TestSetTimes:
    """Seconds measured on the generated test set, per setting (fp32, fp32 cuda_fast)."""

    embedding: dict[str, float] = field(default_factory=dict)
    epoch_evaluation: dict[str, float] = field(default_factory=dict)
    evaluation: dict[str, float] = field(default_factory=dict)
    #: (attack, setting) -> seconds of ``part.queries`` queries, the gallery embedding left out
    attacks: dict[tuple[str, str], float] = field(default_factory=dict)


def time_test_set(table: Table, part: Part, model: nn.Module, dataset: TensorImageDataset, gallery: Tensor,
                  device: torch.device, seed: int, fast: bool, times: TestSetTimes) -> None:
    """The test set's embedding, per-epoch evaluation and evaluate-stage metrics, then every attack alone."""
    setting, n = setting_name("fp32", fast), part.test_images
    evaluation, budget = part.protocol.evaluate, part.budget()
    runs = {
        f"embedding (batch {budget.batch_size}, as every attack run starts)":
            ("embedding", lambda: embed(model, gallery, batch_size=budget.batch_size)),
        "per-epoch evaluation (epoch_metrics)":
            ("epoch_evaluation", lambda: epoch_metrics(model, dataset, evaluation.batch_size, device, part.lam, seed,
                                                       part.num_workers)),
        "evaluate stage (benign_metrics)":
            ("evaluation", lambda: benign_metrics(model, dataset, evaluation.batch_size, device, evaluation.recall_at,
                                                  evaluation.block_size, part.lam, seed, World(), evaluation.nmi_seeds,
                                                  part.num_workers)),
    }
    for name, (key, run) in runs.items():
        found = attempt(table, "test set", f"{name}, {n} images", setting, run, device, min(part.warmup, 1), 1)
        if found is not None:
            getattr(times, key)[setting] = found[0]
            table.measured("test set", f"{name}, {n} images", setting, found[0], n, "images/s", memory=found[2])
    gallery_seconds = times.embedding.get(setting, 0.0)
    labels = torch.as_tensor(dataset.labels, device=device)
    if part.warmup:  # one batch at one step: cuda_fast's cudnn.benchmark tunes its kernels here, not in the first row
        warm = part.budget(steps=1)
        with contextlib.suppress(RuntimeError):  # the row itself then says what fails
            run_attacks(part.protocol.attack.names[:1], model, gallery, labels, warm, seed, max_queries=warm.batch_size)
    for name in part.protocol.attack.names:
        def run(name: str = name) -> object:
            return run_attacks([name], model, gallery, labels, budget, seed, max_queries=part.queries)

        found = attempt(table, "attacks", name, setting, run, device, 0, 1)
        if found is not None:
            taken = max(found[0] - gallery_seconds, 1e-9)
            times.attacks[name, setting] = taken
            table.measured("attacks", name, setting, taken, part.queries, "queries/s", budget.steps, found[2],
                           f"{part.queries} queries, batch {budget.batch_size}; gallery embedding left out")


def run_part(table: Table, part: Part, device: torch.device, seed: int, cuda_fast: bool, checks_only: bool = False
             ) -> tuple[dict[tuple[str, str], float], TestSetTimes]:
    """Determinism checks (``checks_only``) or the timed rows of ``part``, in every setting."""
    torch.manual_seed(seed)
    model = build_model(part.protocol.pretrain.arch, part.protocol.pretrain.embedding_dim).to(device)
    batch = spc2_batch(part, device, seed)
    # the checks attack one batch of queries in a gallery of 4 batches
    dataset = generated_test_set(part, seed, min(part.test_images, 4 * part.budget().batch_size) if checks_only
                                 else part.test_images)
    gallery = dataset.images.to(device).float().div_(255)
    if checks_only:
        check_steps(table, part, model, batch, device, seed)
        check_attacks(table, part, model, gallery, torch.as_tensor(dataset.labels, device=device), seed)
        return {}, TestSetTimes()
    steps, test_times = {}, TestSetTimes()
    table.begin(f"{part.title}: training steps ({len(batch[0])} images)", MEASURED)
    for fast in (False, True) if cuda_fast else (False,):
        configure_backends(fast)
        steps |= time_steps(table, part, model, batch, device, seed, fast)
    table.begin(f"{part.title}: test set and attacks (fp32)", MEASURED)
    for fast in (False, True) if cuda_fast else (False,):
        configure_backends(fast)
        time_test_set(table, part, model, dataset, gallery, device, seed, fast, test_times)
    configure_backends(False)
    return steps, test_times


# --- projections -------------------------------------------------------------------------------------------------------


def project(table: Table, part: Part, steps: dict[tuple[str, str], float], times: TestSetTimes, cuda_fast: bool) -> None:
    """The paper's runs from the measured seconds: CA-TRIDE on CUB, CARS and SOP (the CUB part), or the six
    Fashion-MNIST rows (the Fashion part)."""
    # imported here, not at the top: fashion_table imports this module
    from fashion_table import Sizes, Throughput, project_row

    protocol = part.protocol
    if part.dataset == "cub":  # the same step and the same test-set throughput, at each dataset's sizes
        runs = [(dataset, "ca_tride") for dataset in ("cub", "cars", "sop")]
    else:
        runs = [(part.dataset, model) for model in protocol.models]
    table.begin(f"{part.title}: projected from the rows above", PROJECTED)
    for dataset, model in runs:
        train, test = SPLITS[dataset]
        sizes = Sizes(train, test, test, protocol.finetune.pairs_per_batch, protocol.finetune.epochs,
                      tuple(protocol.attack.names))
        name = (f"{DISPLAY[dataset]} {model}: {sizes.epochs} epochs x {math.ceil(train / sizes.pairs_per_batch)} steps, "
                f"{len(sizes.attacks)} attacks x {test:,} queries")
        for fast in (False, True) if cuda_fast else (False,):
            fp32 = setting_name("fp32", fast)
            scale = test / part.test_images  # the test set's figures grow with its size (embedding dominates)
            try:
                measured = Throughput(
                    step={},
                    epoch_evaluation=times.epoch_evaluation[fp32] * scale, evaluation=times.evaluation[fp32] * scale,
                    gallery=times.embedding[fp32] * scale,
                    attack_batch={attack: times.attacks[attack, fp32] for attack in sizes.attacks},
                    batch_queries=part.queries)
            except KeyError:
                measured = None
            for precision in part.precisions:
                setting = setting_name(precision, fast)
                kinds = DEFENSE_STEPS[model]
                step = (sum(steps[kind, setting] for kind in kinds) / len(kinds)
                        if all((kind, setting) in steps for kind in kinds) else None)
                if measured is None or step is None:
                    table.projected(name, setting, None, None)
                    continue
                row = project_row(model, sizes, replace(measured, step={model: step}))
                table.projected(name, setting, row.training, row.evaluation + row.attacks)


# --- DDP ------------------------------------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def ddp_worker(rank: int, part: Part, seed: int, port: int, backend: str, queue: Any) -> None:
    """One of 2 processes: a CA-TRIDE CAP step of the global batch through ``train_epoch``, as ``training.fit`` runs it."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    device = torch.device("cuda", rank) if backend == "nccl" else torch.device("cpu")
    if device.type == "cuda":
        torch.cuda.set_device(device)
    configure_backends(False)
    seed_everything(seed, device)
    dist.init_process_group(backend, rank=rank, world_size=2, timeout=timedelta(minutes=3))
    try:
        world = World(rank, 2, device)
        model = build_model(part.protocol.pretrain.arch, part.protocol.pretrain.embedding_dim).to(device)
        set_batchnorm_training(model, part.cfg.ca_tride.train_batchnorm)
        replica = DistributedDataParallel(model, forward_sync_buffers=trains_batchnorm(model))
        run = part_step(part, "CA-TRIDE CAP", model, spc2_batch(part, device, seed), device, seed, "fp32", world,
                        replica)
        taken, stats, memory = measure(run, device, part.warmup, part.repeats)
        diverged = world.diverged(model)
        if rank == 0:
            queue.put((taken, stats.get("pgd_steps"), memory, diverged))
    finally:
        dist.destroy_process_group()


def ddp_row(table: Table, part: Part, device: torch.device, seed: int, tiny: bool, one_process: float | None) -> None:
    name, images = "CA-TRIDE CAP, 2 processes", 2 * part.cfg.pairs_per_batch
    table.begin(f"{part.title}: data-parallel training (the global batch of {images} images shared by 2 processes)",
                MEASURED)
    if device.type == "cuda" and torch.cuda.device_count() < 2:
        table.measured("ddp", f"{name} (NCCL)", "fp32", note=f"skipped: {torch.cuda.device_count()} GPU here, 2 needed")
        return
    if device.type == "cpu" and not tiny:
        table.measured("ddp", name, "fp32", note="skipped: a CPU run (the row needs 2 GPUs; --tiny runs it with gloo)")
        return
    backend = "nccl" if device.type == "cuda" else "gloo"
    if device.type == "cuda":
        torch.cuda.empty_cache()
    queue = mp.get_context("spawn").SimpleQueue()
    try:
        mp.start_processes(ddp_worker, args=(part, seed, free_port(), backend, queue), nprocs=2, join=True,
                           start_method="spawn")
        taken, inner, memory, diverged = queue.get()
    except (mp.ProcessRaisedException, mp.ProcessExitedException, RuntimeError) as exc:
        table.failed("ddp", f"{name} ({backend})", "fp32", exc)
        return
    notes = ["the same weights on both processes" if not diverged else "DIVERGED"]
    if memory is not None:
        notes.append("peak memory of rank 0")
    if one_process:
        notes.append(f"{one_process / taken:.2f} x the one-process step's speed")
    if backend == "gloo":
        notes.append("gloo on the CPU: a smoke run of the code path, not a speed")
    table.measured("ddp", f"{name} ({backend})", "fp32", taken, images, "images/s", inner, memory, "; ".join(notes))
    if diverged:
        table.failures.append(f"ddp: the processes' weights differ after training ({', '.join(diverged[:3])})")


# --- main ---------------------------------------------------------------------------------------------------------------


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", choices=["cuda", "cpu"],
                        help="where to run; cuda (the default) is an error where CUDA is not usable [cpu with --tiny]")
    parser.add_argument("--tiny", action="store_true", help="every row at toy sizes: a smoke run of the script")
    parser.add_argument("--cuda-fast", action="store_true",
                        help="also time base.cuda_fast (TF32, cudnn.benchmark): the speed cost of deterministic fp32")
    parser.add_argument("--out", type=Path, help="append every row to this CSV as it is measured")
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps before each timed step row")
    parser.add_argument("--repeats", type=int, default=3, help="timed steps per row (the median is printed)")
    parser.add_argument("--attack-batches", type=int, default=2, help="batches of queries per timed attack")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.device is None:
        args.device = "cpu" if args.tiny else "cuda"
    for option in ("repeats", "attack_batches"):
        if getattr(args, option) < 1:
            parser.error(f"--{option.replace('_', '-')} must be >= 1")
    return args


def main() -> int:
    began = time.monotonic()
    args = parse_args()
    try:
        device = resolve_device(args.device)
    except ParamsError:
        print(f"error: --device cuda: CUDA is not usable here: {cuda_status()[1]}; "
              "--device cpu runs on the CPU, --tiny is the smoke run", file=sys.stderr)
        return 2
    # what every stage does first (commands.common.start): deterministic IEEE fp32, strict deterministic kernels
    configure_backends(False)
    seed_everything(args.seed, device)
    parts = [load_part(dataset, args) for dataset in ("cub", "fashion")]
    print(device_line(device, args.device), flush=True)
    print(f"torch {torch.__version__}; generated data" + (" at toy sizes (--tiny)" if args.tiny else ""))
    for part in parts:
        cfg = part.cfg
        print(f"{part.title}: SPC-2 batch of {2 * cfg.pairs_per_batch} images, inner PGD steps EST/ACT/HM "
              f"{cfg.steps}, TRIDE/CA-TRIDE {cfg.ca_tride.steps} (presets/{part.dataset}.yaml, early stops and ramps "
              f"off), median of {part.repeats} steps after {part.warmup} warm-up; test set {part.test_images:,} "
              f"images, {part.queries} queries per attack at {part.attack_steps} steps; precisions "
              f"{', '.join(part.precisions)}", flush=True)
    table = Table(args.out, began)
    table.begin("determinism: each step and attack twice from the same start, strict deterministic mode", CHECKED)
    for part in parts:
        run_part(table, part, device, args.seed, args.cuda_fast, checks_only=True)
    step_times = {}
    for part in parts:
        steps, test_times = run_part(table, part, device, args.seed, args.cuda_fast)
        project(table, part, steps, test_times, args.cuda_fast)
        step_times[part.dataset] = steps
    ddp_row(table, parts[0], device, args.seed, args.tiny, step_times["cub"].get(("CA-TRIDE CAP", "fp32")))
    print(f"\n{time.monotonic() - began:.0f} s in all; "
          + ("every row ran and every check held" if not table.failures else
             f"{len(table.failures)} failed:\n- " + "\n- ".join(table.failures)), flush=True)
    return 1 if table.failures else 0


if __name__ == "__main__":
    sys.exit(main())
