"""Time CA-TRIDE fine-tuning steps on ResNet-sized input (224 px, 56 pairs = 112 images).

Synthetic images in [0, 1] (data loading is timed by ``resnet_epoch.py``), a
randomly initialised ResNet-18 with frozen BatchNorm, and the real defense
(``catride_core.defenses``) inside the real training step: mining, the inner
sign-PGD (16 steps at eps 8/255, step 1/255; early stop as configured) and the
Adam update. Both phases are timed, since CAP perturbs 2 x 56 images and ANP 56.

Usage::

    python benchmarks/finetune_step.py                     # GPU if present, 5 steps a phase
    python benchmarks/finetune_step.py --device cpu --steps 1   # CPU smoke check (minutes on 2 cores)

Printed: seconds per CAP step and per ANP step (after one warm-up step each),
the inner PGD steps taken, peak GPU memory, and the extrapolated time of one
CUB epoch (ceil(5864 / 56) = 105 steps).
"""

from __future__ import annotations

import argparse
import math
import time

import torch

from catride_core.config import CATrideParams, EvaluateParams, FinetuneParams
from catride_core.defenses import build_defense
from catride_core.models import build_model
from catride_core.runtime import resolve_device, seeded_generator
from catride_core.training import StepContext

CUB_TRAIN_IMAGES = 5864


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    parser.add_argument("--arch", choices=["resnet18", "resnet50"], default="resnet18")
    parser.add_argument("--pairs-per-batch", type=int, default=56)
    parser.add_argument("--steps", type=int, default=5, help="timed training steps per phase (after 1 warm-up)")
    parser.add_argument("--inner-steps", type=int, default=16)
    parser.add_argument("--no-early-stop", action="store_true", help="always run every inner step (worst case)")
    parser.add_argument("--channels-last", action="store_true", help="use channels_last memory format")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    device = resolve_device(args.device)
    torch.manual_seed(0)
    model = build_model(args.arch, 512).to(device)
    if args.channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-5, weight_decay=4e-4)
    cfg = FinetuneParams(
        eps=8 / 255, step_size=1 / 255, steps=args.inner_steps,
        ca_tride=CATrideParams(ramp=False, stop_below=None if args.no_early_stop else 1e-5),
    )
    defense = build_defense("ca_tride", cfg, EvaluateParams().diagnostic_inverse_temperature)
    pairs = args.pairs_per_batch
    generator = torch.Generator().manual_seed(0)
    images = torch.rand(2 * pairs, 3, 224, 224, generator=generator).to(device)
    labels = torch.randint(0, 100, (pairs,), generator=generator).repeat_interleave(2).to(device)
    if args.channels_last:
        images = images.contiguous(memory_format=torch.channels_last)

    def run(step: int) -> tuple[float, float]:
        model.train()
        ctx = StepContext(1, 2, step, seeded_generator(0, step), 0.2, "gradual_semihard")
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        out = defense(model, images, labels, ctx)
        optimizer.zero_grad(set_to_none=True)
        out.loss.backward()
        optimizer.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - start, out.stats["pgd_steps"]

    print(f"device {device}, {args.arch}, batch {2 * pairs} images at 224 px, {args.inner_steps} inner steps")
    for phase, parity in (("CAP", 0), ("ANP", 1)):
        run(parity)  # warm-up (cuDNN autotuning, allocator)
        timings = [run(parity + 2 * (i + 1)) for i in range(args.steps)]
        seconds = sum(t for t, _ in timings) / len(timings)
        inner = sum(s for _, s in timings) / len(timings)
        print(f"{phase}: {seconds:.3f} s/step (mean of {len(timings)}), inner PGD steps {inner:.1f}")
        if phase == "CAP":
            cap = seconds
    steps_per_epoch = math.ceil(CUB_TRAIN_IMAGES / pairs)
    epoch = steps_per_epoch * (cap + seconds) / 2
    print(f"one CUB epoch ({steps_per_epoch} steps, CAP/ANP alternating): about {epoch / 60:.1f} min")
    if device.type == "cuda":
        print(f"peak GPU memory: {torch.cuda.max_memory_allocated() / 2**30:.2f} GiB")


if __name__ == "__main__":
    main()
