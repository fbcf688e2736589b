"""Throughput of each ranking attack against its cost floor.

The floor of attacking one batch is ``steps`` forward+backward passes (gradient
with respect to the input only, as PGD takes it) of that batch; both are
measured in the same run on a randomly initialised c2f2 and random 28x28
images. A ratio near 1 means the attack spends its time in the model, not in
target selection, objectives or scoring.

    python benchmarks/attacks.py --n 1000 --steps 32
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from catride_core.attacks.base import AttackBudget
from catride_core.attacks.runner import run_attacks
from catride_core.models import build_model
from catride_core.names import ATTACKS


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=1000, help="test images (every one is attacked)")
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--steps", type=int, default=32)
    parser.add_argument("--eps", type=float, default=77 / 255)
    parser.add_argument("--step-size", type=float, default=3 / 255)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--attacks", nargs="+", default=list(ATTACKS), choices=ATTACKS)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--repeats", type=int, default=3, help="timings of the floor's forward+backward")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    device = torch.device(args.device)
    torch.manual_seed(args.seed)
    model = build_model("c2f2", 512).to(device)
    generator = torch.Generator().manual_seed(args.seed)
    images = torch.rand(args.n, 1, 28, 28, generator=generator)
    labels = torch.randint(0, args.classes, (args.n,), generator=generator)
    budget = AttackBudget(eps=args.eps, step_size=args.step_size, steps=args.steps, batch_size=args.batch_size)

    batch = images[: args.batch_size].to(device)
    per_batch = forward_backward_seconds(model, batch, args.repeats)
    floor_per_image = args.steps * per_batch / len(batch)
    print(
        f"c2f2 on {device}, N = {args.n}, batch {len(batch)}, {args.steps} steps, "
        f"{torch.get_num_threads()} threads: forward+backward {1e3 * per_batch:.1f} ms/batch, "
        f"floor {1.0 / floor_per_image:.1f} images/s"
    )
    print(f"{'attack':<10}{'seconds':>10}{'images/s':>12}{'x floor':>10}")
    for name in args.attacks:
        _synchronize(device)
        start = time.perf_counter()
        run_attacks([name], model, images, labels, budget, seed=args.seed)
        _synchronize(device)
        seconds = time.perf_counter() - start
        print(f"{name:<10}{seconds:>10.2f}{args.n / seconds:>12.1f}{seconds / (args.n * floor_per_image):>10.2f}")


if __name__ == "__main__":
    main()
