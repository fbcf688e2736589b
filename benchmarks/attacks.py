"""Throughput of each ranking attack against its cost floor.

The floor of attacking one batch is ``steps`` forward+backward passes (gradient
with respect to the input only, as PGD takes it) of that batch; both are
measured in the same run on a randomly initialised c2f2 and random 28x28
images. A ratio near 1 means the attack spends its time in the model, not in
target selection, objectives or scoring.

With ``--scaling`` the same work (every attack on the N images) runs under
torchrun as one process with one thread, one process with two threads, and
two processes with one thread each, and the queries/s of each and the
speed-up of two processes are printed.

    python benchmarks/attacks.py --n 1000 --steps 32
    python benchmarks/attacks.py --n 1000 --steps 16 --scaling
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
import torch.distributed as dist

from catride_core.attacks.base import AttackBudget
from catride_core.attacks.runner import run_attacks
from catride_core.distributed import World, distributed
from catride_core.models import build_model
from catride_core.names import ATTACKS

ROOT = Path(__file__).resolve().parents[1]
#: (processes, CPU threads a process) of ``--scaling``
LAYOUTS = ((1, 1), (1, 2), (2, 1))


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def forward_backward_seconds(model: torch.nn.Module, images: torch.Tensor, repeats: int) -> float:
    """Median time of one forward + input-gradient backward of ``images`` (model in eval mode)."""
    model.eval()
    times = []
    for _ in range(repeats + 1):  # the first one warms up
        batch = images.clone().requires_grad_(True)
        _synchronize(images.device)
        start = time.perf_counter()
        (gradient,) = torch.autograd.grad(model(batch).sum(), batch)
        _synchronize(images.device)
        times.append(time.perf_counter() - start)
    return statistics.median(times[1:])


def seconds_per_attack(args: argparse.Namespace, device: torch.device, world: World) -> dict[str, float]:
    """Wall time of each attack on the N random images, the work shared by ``world``."""
    model, images, labels, budget = workload(args, device)
    seconds = {}
    for name in args.attacks:
        if dist.is_initialized():
            dist.barrier()
        _synchronize(device)
        start = time.perf_counter()
        run_attacks([name], model, images, labels, budget, seed=args.seed, world=world)
        _synchronize(device)
        seconds[name] = time.perf_counter() - start
    return seconds


def workload(args: argparse.Namespace, device: torch.device):
    """A seeded random c2f2, N random 28 x 28 images with labels, and the budget."""
    torch.manual_seed(args.seed)
    model = build_model("c2f2", 512).to(device)
    generator = torch.Generator().manual_seed(args.seed)
    images = torch.rand(args.n, 1, 28, 28, generator=generator)
    labels = torch.randint(0, args.classes, (args.n,), generator=generator)
    budget = AttackBudget(eps=args.eps, step_size=args.step_size, steps=args.steps, batch_size=args.batch_size)
    return model, images, labels, budget


def scaling(args: argparse.Namespace) -> None:
    """Run the timing under torchrun for every layout of ``LAYOUTS`` and print queries/s and speed-ups."""
    passed = [f"--images={args.n}", f"--classes={args.classes}", f"--steps={args.steps}", f"--eps={args.eps}",
              f"--step-size={args.step_size}", f"--batch-size={args.batch_size}", f"--device={args.device}",
              f"--seed={args.seed}", "--attacks", *args.attacks]
    timings = {}
    for processes, threads in LAYOUTS:
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}",
                   str(Path(__file__).resolve()), "--json", *passed]
        env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": str(threads)}
        printed = subprocess.run(command, env=env, check=True, capture_output=True, text=True).stdout
        timings[processes, threads] = json.loads(printed.strip().splitlines()[-1])
    print(f"c2f2 on {args.device}, N = {args.n}, batch {args.batch_size}, {args.steps} steps: queries/s")
    header = " | ".join(f"{p} process{'es' if p > 1 else ''} x {t} thread{'s' if t > 1 else ''}" for p, t in LAYOUTS)
    print(f"| attack | {header} | 2 x 1 vs 1 x 1 | 2 x 1 vs 1 x 2 |")
    print("|---" * (len(LAYOUTS) + 3) + "|")
    for name in [*args.attacks, "all"]:
        seconds = {layout: sum(t.values()) if name == "all" else t[name] for layout, t in timings.items()}
        queries = args.n * (len(args.attacks) if name == "all" else 1)
        rates = " | ".join(f"{queries / seconds[layout]:.1f}" for layout in LAYOUTS)
        print(f"| {name} | {rates} | {seconds[1, 1] / seconds[2, 1]:.2f}x | {seconds[1, 2] / seconds[2, 1]:.2f}x |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    # --images: torchrun would take a bare --n after the script for an abbreviation of its own options
    parser.add_argument("--n", "--images", dest="n", type=int, default=1000, help="test images (every one is attacked)")
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--steps", type=int, default=32)
    parser.add_argument("--eps", type=float, default=77 / 255)
    parser.add_argument("--step-size", type=float, default=3 / 255)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--attacks", nargs="+", default=list(ATTACKS), choices=ATTACKS)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--repeats", type=int, default=3, help="timings of the floor's forward+backward")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--scaling", action="store_true", help="compare 1 and 2 processes under torchrun")
    parser.add_argument("--json", action="store_true", help="print only the seconds per attack, as JSON (rank 0)")
    args = parser.parse_args()

    if args.scaling:
        scaling(args)
        return
    device = torch.device(args.device)
    if args.json:
        with distributed(device) as world:
            seconds = seconds_per_attack(args, device, world)
        if world.is_main:
            print(json.dumps(seconds))
        return
    model, images, _, _ = workload(args, device)
    batch = images[: args.batch_size].to(device)
    per_batch = forward_backward_seconds(model, batch, args.repeats)
    floor_per_image = args.steps * per_batch / len(batch)
    print(
        f"c2f2 on {device}, N = {args.n}, batch {len(batch)}, {args.steps} steps, "
        f"{torch.get_num_threads()} threads: forward+backward {1e3 * per_batch:.1f} ms/batch, "
        f"floor {1.0 / floor_per_image:.1f} images/s"
    )
    print(f"{'attack':<10}{'seconds':>10}{'images/s':>12}{'x floor':>10}")
    for name, seconds in seconds_per_attack(args, device, World()).items():
        print(f"{name:<10}{seconds:>10.2f}{args.n / seconds:>12.1f}{seconds / (args.n * floor_per_image):>10.2f}")


if __name__ == "__main__":
    main()
