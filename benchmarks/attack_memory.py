"""Peak memory of the attack stage against the size of the 224 px gallery.

For each gallery size N, a ``folder`` dataset of 224 x 224 JPEGs (smooth
random colour, 50 a class) is written to a temporary folder with N / 0.8
images, split class-disjoint with ``test_fraction`` 0.8 so that the test split
(the gallery) holds N images, prepared with ``stages/prepare.py``, and then
``stages/attack.py`` runs on it in a fresh process with a randomly initialised
ResNet-18 (no weights file) and few attacked queries. The peak resident memory
of that process (``ru_maxrss`` of the child, from ``os.wait4``) is recorded.

Printed: a markdown table of peak RSS per gallery size, the growth per gallery
image between the smallest and the largest size compared with the gallery
embeddings' D x 4 bytes per image, and the peak extrapolated to 60,502 images
(SOP's test split), next to what holding the split as one float tensor would
take (3 x 224 x 224 x 4 bytes per image).

    python benchmarks/attack_memory.py                       # N = 1,000 and 4,000
    python benchmarks/attack_memory.py --fixed-mmap-threshold
    python benchmarks/attack_memory.py --sizes 500 1000 --keep /tmp/memory

glibc keeps freed large buffers (a batch of images, activations) in its heap
once its dynamic mmap threshold has risen, so the peak RSS can creep up with
the number of batches although nothing is held; ``--fixed-mmap-threshold``
runs the stage with the threshold pinned, which shows what the stage itself
keeps.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml
from PIL import Image

from catride_core.artifacts.checkpoints import save_checkpoint
from catride_core.artifacts.prepared import load_prepared
from catride_core.models import build_model

ROOT = Path(__file__).resolve().parents[1]
PER_CLASS = 50
TEST_FRACTION = 0.8
SOP_TEST_IMAGES = 60_502
IMAGE_BYTES = 3 * 224 * 224 * 4


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 4000], help="gallery sizes N (multiples of 200)")
    parser.add_argument("--embedding-dim", type=int, default=512)
    parser.add_argument("--batch-size", type=int, default=64,
                        help="attack.batch_size: images embedded and attacked at once")
    parser.add_argument("--max-queries", type=int, default=8)
    parser.add_argument("--steps", type=int, default=1)
    parser.add_argument("--attack", default="es")
    parser.add_argument("--fixed-mmap-threshold", action="store_true",
                        help="run the stage with MALLOC_MMAP_THRESHOLD_=65536: glibc then hands every freed buffer "
                             "over 64 KiB back at once instead of keeping it in its heap")
    parser.add_argument("--keep", type=Path, help="work in this folder and keep it (default: a removed temporary one)")
    return parser.parse_args()


def write_jpegs(root: Path, n_images: int, seed: int) -> None:
    """``n_images`` 224 x 224 JPEGs in ``root/<class>/``, ``PER_CLASS`` a class."""
    rng = np.random.default_rng(seed)
    for index in range(n_images):
        folder = root / f"class{index // PER_CLASS:04d}"
        folder.mkdir(parents=True, exist_ok=True)
        coarse = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
        Image.fromarray(coarse).resize((224, 224), Image.BILINEAR).save(folder / f"{index:06d}.jpg", quality=90)


def stage(script: str, *args: object, env: dict[str, str] | None = None) -> tuple[float, float]:
    """Run ``stages/<script>`` in a fresh process of this repository's code: (peak RSS in bytes, seconds)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    start = time.perf_counter()
    child = subprocess.Popen([sys.executable, f"stages/{script}", *map(str, args)], cwd=ROOT, env=env,
                             stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(child.pid, 0)
    child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode != 0:
        raise SystemExit(f"stages/{script} failed with exit code {child.returncode}")
    return usage.ru_maxrss * 1024.0, time.perf_counter() - start  # ru_maxrss is in KiB on Linux


def measure(work: Path, n_test: int, args: argparse.Namespace) -> tuple[int, float, float]:
    """(gallery size, peak RSS in bytes, seconds) of the attack stage on a fresh gallery of ``n_test`` images."""
    folder = work / f"n{n_test}"
    n_classes = round(n_test / PER_CLASS / TEST_FRACTION)
    write_jpegs(folder / "images", n_classes * PER_CLASS, seed=n_test)
    params = {
        "prepare": {"dataset": "folder", "root": str(folder / "images"), "split": "class_disjoint",
                    "test_fraction": TEST_FRACTION},
        "pretrain": {"arch": "resnet18", "embedding_dim": args.embedding_dim},
        "attack": {"names": [args.attack], "eps": "8/255", "step_size": "1/255", "steps": args.steps,
                   "batch_size": args.batch_size, "max_queries": args.max_queries, "save_images": 0},
    }
    (folder / "params.yaml").write_text(yaml.safe_dump(params))
    stage("prepare.py", "--params", folder / "params.yaml", "--out", folder / "prepared")
    n_gallery = load_prepared(folder / "prepared").meta["n_test"]
    save_checkpoint(folder / "model.pt", build_model("resnet18", args.embedding_dim), {}, {})
    peak, seconds = stage("attack.py", "--params", folder / "params.yaml", "--data", folder / "prepared",
                          "--checkpoint", folder / "model.pt", "--out", folder / "attacks", "--no-progress",
                          env={"MALLOC_MMAP_THRESHOLD_": "65536"} if args.fixed_mmap_threshold else None)
    return n_gallery, peak, seconds


def main() -> None:
    args = parse_args()
    with tempfile.TemporaryDirectory() as temporary:
        work = args.keep or Path(temporary)
        rows = [measure(work, size, args) for size in sorted(args.sizes)]
    print(f"attack stage, resnet18 (random init), D = {args.embedding_dim}, batch {args.batch_size}, "
          f"{args.max_queries} queries of {args.attack}, {args.steps} step(s)"
          f"{', MALLOC_MMAP_THRESHOLD_=65536' if args.fixed_mmap_threshold else ''}\n")
    print("| gallery images | peak RSS | time |")
    print("|---|---|---|")
    for n_gallery, peak, seconds in rows:
        print(f"| {n_gallery:,} | {peak / 2**20:,.0f} MiB | {seconds:.0f} s |")
    (n_low, low, _), (n_high, high, _) = rows[0], rows[-1]
    if n_high > n_low:
        growth = (high - low) / (n_high - n_low)
        extrapolated = low + growth * (SOP_TEST_IMAGES - n_low)
        print(f"\ngrowth: {growth / 1024:.1f} KiB per gallery image (embeddings: "
              f"{args.embedding_dim * 4 / 1024:.1f} KiB, one stacked float image: {IMAGE_BYTES / 1024:.0f} KiB)")
        print(f"extrapolated to {SOP_TEST_IMAGES:,} images: {extrapolated / 2**30:.2f} GiB "
              f"(the split as one float tensor alone: {SOP_TEST_IMAGES * IMAGE_BYTES / 2**30:.1f} GiB)")


if __name__ == "__main__":
    main()
