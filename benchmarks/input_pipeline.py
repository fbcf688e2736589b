"""The 224 px input pipeline: image files decoded every epoch against the decode cache (``prepare.decode_cache``).

A CUB-like pool of JPEGs (500 x 375 px, ``resnet_epoch.write_jpegs``) is
written to a temporary folder and prepared as the ``prepare`` stage does with
``decode_cache: true`` (decoding in ``--workers`` processes, then the SHA-256
of every file). Then, for the train and the test transforms:

- one item on one core (one torch thread, no DataLoader, each item dropped
  at once): the file path (``FileImageDataset``: PIL decode, RGB, resize to
  256, crop, flip, to float) and the cached path (``DecodedImageDataset``: a
  row of the memory-mapped cache, crop, flip, to float);
- per training step: the time a DataLoader takes to hand over one SPC-2 batch
  (``--pairs-per-batch`` pairs, 112 images by default, collated) in the main
  process and with ``--workers`` worker processes, nothing else running, the
  first batch (worker start) left out; images/s per core is the batch over
  the main-process time.

Usage::

    python benchmarks/input_pipeline.py                 # 600 images, 2 workers, ~2 minutes on 2 cores
    python benchmarks/input_pipeline.py --workers 16    # on a bigger host

Prints markdown tables; asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from resnet_epoch import write_jpegs
from torch.utils.data import DataLoader, Dataset

from catride_core.artifacts.prepared import load_prepared, save_prepared
from catride_core.data.images import decode_images
from catride_core.data.prepared import PreparedData, build_dataset
from catride_core.data.sampler import SPC2Sampler
from catride_core.data.source import SourceData

CLASSES = 100


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=600, help="JPEGs written (CUB-sized, 500 x 375)")
    parser.add_argument("--workers", type=int, default=2, help="processes decoding the cache and DataLoader workers")
    parser.add_argument("--pairs-per-batch", type=int, default=56, help="P of SPC-2 (a step reads 2P images)")
    parser.add_argument("--batches", type=int, default=4, help="timed DataLoader batches per row (after one warm-up)")
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args()


def prepare_pool(folder: Path, count: int, workers: int, seed: int) -> tuple[PreparedData, dict[str, float]]:
    """Write the JPEGs, prepare them with the decode cache, load them back; the seconds each step took."""
    images = folder / "images"
    images.mkdir()
    paths = [f"images/{name}" for name in write_jpegs(images, count, seed)]
    labels = np.arange(count) % max(2, min(CLASSES, count // 6))  # CUB's 100 classes, 6 images each at 600
    source = SourceData(labels=labels, image_size=224, channels=3, paths=paths, checksum="benchmark")
    is_test = np.zeros(count, dtype=bool)
    is_test[::2] = True
    start = time.perf_counter()
    save_prepared(folder / "prepared", source, is_test, "folder", str(folder),
                  decode_images(folder, paths, 224, num_workers=workers))
    built = time.perf_counter()
    data = load_prepared(folder / "prepared")
    loaded = time.perf_counter()
    # the whole pool serves as the training side: every item is read, as in an epoch
    data = PreparedData(manifest=data.manifest.assign(split="train"), meta=data.meta, decoded=data.decoded)
    return data, {"build": built - start, "load": loaded - built}


def seconds_per_item(dataset: Dataset) -> float:
    """Mean seconds to read one item, every item once, on this process's one thread (after 8 warm-up reads)."""
    for index in range(min(8, len(dataset))):
        dataset[index]
    start = time.perf_counter()
    for index in range(len(dataset)):
        dataset[index]
    return (time.perf_counter() - start) / len(dataset)


def seconds_per_batch(dataset: Dataset, labels: np.ndarray, pairs: int, workers: int, batches: int, seed: int) -> float:
    """Median seconds between two SPC-2 batches of a seeded DataLoader that nothing else competes with."""
    sampler = SPC2Sampler(labels, pairs, seed)
    loader = DataLoader(dataset, batch_sampler=sampler, num_workers=workers,
                        generator=torch.Generator().manual_seed(seed))
    times = []
    iterator = iter(loader)
    next(iterator)  # worker start and the first batch
    for _ in range(min(batches, len(sampler) - 1)):
        start = time.perf_counter()
        next(iterator)
        times.append(time.perf_counter() - start)
    del iterator
    return statistics.median(times)


def main() -> None:
    args = parse_args()
    torch.set_num_threads(1)  # per-core figures; the DataLoader rows add worker processes
    with tempfile.TemporaryDirectory() as folder:
        data, prepared = prepare_pool(Path(folder), args.images, args.workers, args.seed)
        files = PreparedData(manifest=data.manifest, meta=data.meta)
        cache_bytes = data.decoded.stat().st_size
        labels = data.labels("train")
        items, steps = {}, {}
        for name, prepared_data in (("files (PIL decode + resize every epoch)", files),
                                    ("decode cache (mmap + crop)", data)):
            for train in (True, False):
                items[name, train] = seconds_per_item(build_dataset(prepared_data, "train", train=train))
            train_set = build_dataset(prepared_data, "train", train=True)
            for workers in (0, args.workers):
                torch.manual_seed(args.seed)
                steps[name, workers] = seconds_per_batch(
                    train_set, labels, args.pairs_per_batch, workers, args.batches, args.seed)

    batch = 2 * args.pairs_per_batch
    load = ", ".join(f"{value:.1f}" for value in os.getloadavg())
    print(f"{args.images} JPEGs of 500 x 375 px, 224 px crops of 256 x 256, torch {torch.__version__}, "
          f"{args.workers} workers, {os.cpu_count()} CPUs, load average {load}\n")
    print("| path | one item, train | one item, test | data time per step "
          f"({batch} images), 1 process | images/s per core in steps | {args.workers} workers |")
    print("|---|---|---|---|---|---|")
    for name in dict.fromkeys(key for key, _ in items):
        print(f"| {name} | {items[name, True] * 1e3:.2f} ms | {items[name, False] * 1e3:.2f} ms "
              f"| {steps[name, 0]:.3f} s | {batch / steps[name, 0]:,.0f} | {steps[name, args.workers]:.3f} s |")
    print()
    print("| building the cache | |")
    print("|---|---|")
    print(f"| decode + resize + write + SHA-256, {args.workers} workers | {prepared['build']:.1f} s "
          f"({args.images / prepared['build']:,.0f} images/s) |")
    print(f"| size | {cache_bytes / 1e6:,.0f} MB ({cache_bytes / args.images / 1e3:.0f} kB per image) |")
    print(f"| load_prepared (SHA-256 check of every file) | {prepared['load']:.2f} s "
          f"({cache_bytes / prepared['load'] / 1e9:.2f} GB/s) |")


if __name__ == "__main__":
    main()
