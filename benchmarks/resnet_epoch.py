"""Time one ResNet pretraining epoch on a CUB-sized fake dataset.

The fake dataset has CUB's training side: 5,864 images of 100 classes. A pool
of distinct JPEGs at CUB's typical size (500 x 375) is written to a temporary
folder and every item points at one of them, so that each step pays what a
real one does: JPEG decoding, the 224 px train transforms
(``FileImageDataset``), SPC-2 batching, the forward and backward pass, mining,
the triplet loss and the Adam step.

Usage (the first batch is warm-up)::

    python benchmarks/resnet_epoch.py                  # whole epoch, GPU if present
    python benchmarks/resnet_epoch.py --device cpu --max-batches 3 --pairs-per-batch 16
                                                       # CPU smoke check, ~30 s on 2 cores

Printed: seconds per batch (data wait and compute separately), and the epoch
time extrapolated to all ceil(5864 / P) batches.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader

from catride_core.data.images import FileImageDataset
from catride_core.data.sampler import SPC2Sampler
from catride_core.losses import mine_triplets, triplet_loss
from catride_core.models import build_model

CUB_TRAIN_IMAGES = 5864
CUB_TRAIN_CLASSES = 100


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    parser.add_argument("--arch", choices=["resnet18", "resnet50"], default="resnet18")
    parser.add_argument("--embedding-dim", type=int, default=512)
    parser.add_argument("--pairs-per-batch", type=int, default=56, help="P of SPC-2 (batch = 2P images)")
    parser.add_argument("--max-batches", type=int, default=0, help="stop after this many batches; 0 = whole epoch")
    parser.add_argument("--warmup", type=int, default=1, help="leading batches left out of the timing")
    parser.add_argument("--num-workers", type=int, default=0, help="DataLoader worker processes")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads; 0 = torch's default")
    parser.add_argument("--distinct-images", type=int, default=64, help="JPEG files actually written")
    parser.add_argument("--miner", choices=["random", "semihard", "gradual_semihard"], default="gradual_semihard")
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args()


def write_jpegs(folder: Path, count: int, seed: int) -> list[str]:
    """``count`` 500 x 375 JPEGs of smooth random colour (photo-like file sizes, unlike pure noise)."""
    rng = np.random.default_rng(seed)
    names = []
    for k in range(count):
        coarse = Image.fromarray(rng.integers(0, 256, (24, 32, 3), dtype=np.uint8))
        fine = rng.integers(-12, 13, (375, 500, 3))
        pixels = np.clip(np.asarray(coarse.resize((500, 375), Image.BILINEAR), dtype=np.int64) + fine, 0, 255)
        Image.fromarray(pixels.astype(np.uint8)).save(folder / f"{k}.jpg", quality=90)
        names.append(f"{k}.jpg")
    return names


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main() -> None:
    args = parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    use_cuda = args.device == "cuda" or (args.device == "auto" and torch.cuda.is_available())
    device = torch.device("cuda" if use_cuda else "cpu")
    torch.manual_seed(args.seed)

    with tempfile.TemporaryDirectory() as folder:
        pool = write_jpegs(Path(folder), args.distinct_images, args.seed)
        labels = np.arange(CUB_TRAIN_IMAGES) % CUB_TRAIN_CLASSES
        paths = [pool[i % len(pool)] for i in range(CUB_TRAIN_IMAGES)]
        dataset = FileImageDataset(folder, paths, labels, image_size=224, train=True)
        sampler = SPC2Sampler(labels, args.pairs_per_batch, seed=args.seed)
        loader = DataLoader(
            dataset,
            batch_sampler=sampler,
            num_workers=args.num_workers,
            pin_memory=use_cuda,
            generator=torch.Generator().manual_seed(args.seed),
        )
        model = build_model(args.arch, args.embedding_dim).to(device).train()
        optimiser = torch.optim.Adam(model.parameters(), lr=1e-5, weight_decay=4e-4)
        miner_generator = torch.Generator().manual_seed(args.seed)

        data_times, compute_times = [], []
        limit = args.max_batches or len(sampler)
        tick = time.perf_counter()
        for step, (images, batch_labels) in enumerate(loader):
            loaded = time.perf_counter()
            images = images.to(device, non_blocking=True)
            batch_labels = batch_labels.to(device, non_blocking=True)
            embeddings = model(images)
            anchors, positives, negatives = mine_triplets(
                embeddings, batch_labels, args.miner, 0.2, miner_generator, epoch=0, epochs=75
            )
            loss = triplet_loss(embeddings[anchors], embeddings[positives], embeddings[negatives], 0.2)
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            synchronize(device)
            done = time.perf_counter()
            data_times.append(loaded - tick)
            compute_times.append(done - loaded)
            print(f"batch {step}: {len(images)} images, data {loaded - tick:.2f} s, "
                  f"compute {done - loaded:.2f} s, loss {loss.item():.4f}", flush=True)
            tick = time.perf_counter()
            if step + 1 >= limit:
                break

    timed = slice(min(args.warmup, len(data_times) - 1), None)
    data, compute = np.mean(data_times[timed]), np.mean(compute_times[timed])
    per_batch = data + compute
    batches = len(sampler)
    where = torch.cuda.get_device_name(device) if use_cuda else f"{torch.get_num_threads()} threads"
    print(f"device {device} ({where}), {args.arch}, P = {args.pairs_per_batch} pairs "
          f"({2 * args.pairs_per_batch} images per batch), num_workers {args.num_workers}")
    print(f"timed batches: {len(data_times[timed])} (after {len(data_times) - len(data_times[timed])} warm-up)")
    print(f"per batch: {per_batch:.3f} s = data {data:.3f} s + compute {compute:.3f} s "
          f"({2 * args.pairs_per_batch / per_batch:.1f} images/s)")
    if len(data_times) < batches:
        print(f"epoch ({CUB_TRAIN_IMAGES} anchors, {batches} batches): {per_batch * batches:.1f} s "
              f"= {per_batch * batches / 60:.1f} min (extrapolated)")
    else:
        print(f"epoch ({CUB_TRAIN_IMAGES} anchors, {batches} batches): "
              f"{sum(data_times) + sum(compute_times):.1f} s (measured)")

if __name__ == "__main__":
    main()
