"""Time and peak memory of ``retrieval_metrics`` on a synthetic gallery.

Random unit vectors with random labels, every item a query against the whole
set (self excluded), as in the evaluate stage. Prints figures; asserts nothing.

    python benchmarks/retrieval_scale.py --size 10000
    python benchmarks/retrieval_scale.py --queries 1024   # one block against 60k, extrapolated
"""

from __future__ import annotations

import argparse
import resource
import time

import torch
import torch.nn.functional as F

from catride_core.retrieval.metrics import nmi, rank_metrics, retrieval_metrics


def peak_rss_mib() -> float:
    """High-water mark of this process's resident memory (ru_maxrss is KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=60000, help="items (queries = gallery)")
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--block-size", type=int, default=1024)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--queries", type=int, default=None,
        help="time rank_metrics for only this many queries against the full gallery and extrapolate",
    )
    args = parser.parse_args()

    generator = torch.Generator().manual_seed(args.seed)
    embeddings = F.normalize(torch.randn(args.size, args.dim, generator=generator), dim=1)
    labels = torch.randint(0, args.classes, (args.size,), generator=generator)
    rss_before = peak_rss_mib()
    block_mib = args.block_size * args.size * 8 / 2**20
    print(f"items {args.size}  dim {args.dim}  classes {args.classes}  block_size {args.block_size}")
    print(f"torch threads {torch.get_num_threads()}")

    if args.queries is not None:
        own = torch.arange(args.queries)
        start = time.perf_counter()
        rank_metrics(embeddings[: args.queries], labels[: args.queries], embeddings, labels, own,
                     (1, 2, 4, 8), args.block_size)
        part_s = time.perf_counter() - start
        rss_after = peak_rss_mib()
        print(f"rank_metrics, {args.queries} queries  {part_s:8.1f} s  "
              f"({1000 * part_s / args.queries:.2f} ms per query; all {args.size} queries "
              f"~{part_s * args.size / args.queries / 60:.1f} min)")
        print(f"peak RSS            {rss_after:8.0f} MiB  (before the call {rss_before:.0f} MiB, "
              f"increase {rss_after - rss_before:.0f} MiB)")
        return

    start = time.perf_counter()
    metrics = retrieval_metrics(embeddings, labels, (1, 2, 4, 8), args.block_size, args.seed)
    total_s = time.perf_counter() - start
    rss_after = peak_rss_mib()

    start = time.perf_counter()
    nmi(embeddings, labels, args.classes, args.seed)
    nmi_s = time.perf_counter() - start

    print(f"retrieval_metrics   {total_s:8.1f} s  ({1000 * total_s / args.size:.2f} ms per query)")
    print(f"  of which NMI      {nmi_s:8.1f} s")
    print(f"peak RSS            {rss_after:8.0f} MiB  (before the call {rss_before:.0f} MiB, "
          f"increase {rss_after - rss_before:.0f} MiB = {(rss_after - rss_before) / block_mib:.1f} "
          f"x one float64 block of {block_mib:.0f} MiB)")
    print("metrics (%)", metrics)


if __name__ == "__main__":
    main()
