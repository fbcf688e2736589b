"""How close the pipeline runs to its forward/backward floor.

Runs every stage of ``dvc.yaml`` in DVC's order, in-process, in a copy of the
project (the stage commands of ``catride_core.commands``, the same ones
``dvc repro`` runs; params from the copy's ``params.yaml``), while a global
forward hook counts every pass through the embedding model: its input shape,
train/eval mode, whether gradients flow to the input and to the weights, and
whether a backward pass followed. Right after each stage it times one pass of
each kind the stage used on a fresh model of the same architecture (median of
repeats, so the floor sees the same machine load as the stage) and
prints, per stage and for the whole pipeline, the measured time, the floor
(the sum over counted passes of their timed cost) and the ratio. Everything
else a stage does (data loading, mining, ranking against the gallery, metrics,
writing files) is what the ratio above 1 is made of.

Usage::

    python benchmarks/pipeline_floor.py                       # the default params.yaml
    python benchmarks/pipeline_floor.py --params my.yaml      # another params file for the copy
    python benchmarks/pipeline_floor.py --keep /tmp/floor     # keep the copy (its outputs) there
    python benchmarks/pipeline_floor.py --stages 'adaptive@*' 'attack@*'   # only these, on this checkout's outputs

``--stages`` runs only the stages whose names match one of its patterns, in
DVC's order, in a copy that also holds this checkout's pipeline outputs (its
``dvc repro`` must have run), so that their inputs exist.

Not counted by the in-process run: each stage's interpreter start and imports
under ``dvc repro``; the script times one such start and prints it separately.
"""

from __future__ import annotations

import argparse
import fnmatch
import importlib
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from contextlib import chdir
from pathlib import Path
from typing import Self

import networkx as nx
import torch
from dvc.repo import Repo

from catride_core.models import Embedder, build_model

ROOT = Path(__file__).resolve().parents[1]
#: the pipeline's outputs a run of some stages may read, copied with ``--stages``
OUTPUT_FOLDERS = ("data/prepared", "models", "attacks", "adaptive", "metrics", "bootstrap", "logs", "reports")

#: a kind of pass: (arch, embedding dim, input shape, training mode, grad to input, grad to weights)
PassKind = tuple[str, int, tuple[int, ...], bool, bool, bool]


class PassCounter:
    """Counts forward and backward passes through every ``Embedder``, by kind."""

    def __init__(self) -> None:
        self.forward: Counter[PassKind] = Counter()
        self.backward: Counter[PassKind] = Counter()
        self._handle = None

    def _hook(self, module, args, output) -> None:
        if not isinstance(module, Embedder):
            return
        images = args[0]
        kind: PassKind = (
            module.arch, module.embedding_dim, tuple(images.shape), module.training,
            torch.is_grad_enabled() and images.requires_grad,
            torch.is_grad_enabled() and any(p.requires_grad for p in module.parameters()),
        )
        self.forward[kind] += 1
        if isinstance(output, torch.Tensor) and output.requires_grad:
            output.register_hook(lambda grad, kind=kind: self.backward.update([kind]))

    def __enter__(self) -> Self:
        self._handle = torch.nn.modules.module.register_module_forward_hook(self._hook)
        return self

    def __exit__(self, *exc) -> None:
        self._handle.remove()


def _median_seconds(fn, min_total: float = 0.2, max_reps: int = 20) -> float:
    fn()  # warm-up
    times: list[float] = []
    while len(times) < max_reps and (len(times) < 3 or sum(times) < min_total):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def pass_costs(kind: PassKind) -> tuple[float, float]:
    """Seconds of one forward pass and of one backward pass of ``kind`` (measured now).

    The backward's cost is that of a forward with gradient plus its backward, less a forward without.
    """
    arch, dim, shape, training, grad_input, grad_weights = kind
    torch.manual_seed(0)
    model = build_model(arch, dim).train(training)
    model.requires_grad_(grad_weights)
    images = torch.rand(shape)

    def forward() -> None:
        with torch.no_grad():
            model(images)

    def forward_backward() -> None:
        # as the pipeline differentiates: a pass whose input needs a gradient is an attack's or an inner
        # PGD's, which takes torch.autograd.grad w.r.t. the images only (no weight gradient is computed);
        # any other is a training step's loss.backward() into the weights
        x = images.clone().requires_grad_(grad_input)
        if grad_input:
            torch.autograd.grad(model(x).sum(), x)
        else:
            model(x).sum().backward()
            model.zero_grad(set_to_none=True)

    t_forward = _median_seconds(forward)
    if not (grad_input or grad_weights):
        return t_forward, 0.0
    return t_forward, max(_median_seconds(forward_backward) - t_forward, 0.0)


def stage_order(project: Path) -> list[tuple[str, list[str]]]:
    """(name, argv) of every stage of ``project``'s dvc.yaml, dependencies first."""
    repo = Repo(str(project))
    try:
        order = reversed(list(nx.topological_sort(repo.index.graph)))
        return [(stage.name, shlex.split(stage.cmd)) for stage in order]
    finally:
        repo.close()


def run_stage(argv: list[str]) -> None:
    """Run ``python -m stages.<stage> args`` in-process through its click command."""
    if argv[:2] != ["python", "-m"] or not argv[2].startswith("stages."):
        raise SystemExit(f"unexpected stage command: {shlex.join(argv)}")
    stage = argv[2].removeprefix("stages.")
    command = getattr(importlib.import_module(f"catride_core.commands.{stage}"), stage)
    try:
        command.main(args=argv[3:], prog_name=stage, standalone_mode=False)
    except SystemExit as exit_:
        if exit_.code:
            raise


def copy_project(destination: Path) -> None:
    """The files git tracks, without the outputs they would make."""
    files = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    for name in files:
        source = ROOT / name
        if source.is_file():
            target = destination / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    subprocess.run(["git", "init", "--quiet"], cwd=destination, check=True)  # DVC reads a project inside git


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--params", type=Path, help="params file to use instead of the project's params.yaml")
    parser.add_argument("--keep", type=Path, help="folder to run in and keep (default: a temporary one)")
    parser.add_argument("--stages", nargs="+", metavar="PATTERN",
                        help="run only the stages matching these patterns, on this checkout's outputs")
    args = parser.parse_args()

    workdir = args.keep or Path(tempfile.mkdtemp(prefix="catride-floor-"))
    workdir.mkdir(parents=True, exist_ok=True)
    copy_project(workdir)
    if args.params:
        shutil.copy(args.params, workdir / "params.yaml")
    stages = stage_order(workdir)
    if args.stages:
        stages = [(name, argv) for name, argv in stages if any(fnmatch.fnmatch(name, p) for p in args.stages)]
        if not stages:
            raise SystemExit(f"no stage matches {args.stages}")
        for folder in OUTPUT_FOLDERS:
            if (ROOT / folder).exists():
                shutil.copytree(ROOT / folder, workdir / folder, dirs_exist_ok=True)
    print(f"{len(stages)} stages in {workdir}; torch threads {torch.get_num_threads()}", flush=True)

    # each stage's passes are timed right after it ran, so a change in the machine's load between
    # stages moves a stage's time and its floor together
    measured: list[tuple[str, float, int, int, float]] = []
    with chdir(workdir):
        for name, argv in stages:
            with PassCounter() as counter:
                start = time.perf_counter()
                run_stage(argv)
                elapsed = time.perf_counter() - start
            costs = {kind: pass_costs(kind) for kind in set(counter.forward) | set(counter.backward)}
            floor = (sum(n * costs[k][0] for k, n in counter.forward.items())
                     + sum(n * costs[k][1] for k, n in counter.backward.items()))
            measured.append((name, elapsed, counter.forward.total(), counter.backward.total(), floor))
            print(f"ran {name}: {elapsed:.1f} s, floor {floor:.1f} s", flush=True)

    start = time.perf_counter()
    subprocess.run([sys.executable, str(ROOT / "stages" / "report.py"), "--help"], check=True, capture_output=True)
    startup = time.perf_counter() - start

    print(f"\n{'stage':<22}{'time s':>9}{'fwd':>9}{'bwd':>9}{'floor s':>9}{'ratio':>7}")
    total_time = total_floor = 0.0
    for name, elapsed, forward, backward, floor in measured:
        total_time, total_floor = total_time + elapsed, total_floor + floor
        ratio = f"{elapsed / floor:7.2f}" if floor > 0 else "      -"
        print(f"{name:<22}{elapsed:9.1f}{forward:9d}{backward:9d}{floor:9.1f}{ratio}")
    print(f"{'pipeline':<22}{total_time:9.1f}{'':18}{total_floor:9.1f}{total_time / total_floor:7.2f}")
    print(f"\ninterpreter start + imports of one stage under dvc repro: {startup:.1f} s "
          f"(x {len(measured)} stages = {startup * len(measured):.0f} s, not in the times above)")
    if not args.keep:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
