"""Time and peak memory of the exact benign metrics on a paper-sized synthetic gallery.

Synthetic L2-normalised float32 embeddings (random directions: no class
structure, so relevant items sit anywhere in a ranking, the hardest case for
counting), every item a query against all, own item excluded by index, as in
the evaluate stage. Two label structures:

- ``sop``: the size of Stanford Online Products' test split, 60,502 items in 11,316 classes
  of 2 to about 15 (each class 2 items, plus 37,870 spread uniformly at random),
  so R is 5.0 on average over the queries;
- ``cub``: 10 classes of 6,050 items (CUB/MNIST-like; 60,500 items), R = 6,049.

Each measurement runs in a fresh process, so that the peak RSS of one does not
hide in another's: R@K + mAP + mAP@R (``rank_metrics``), one plain faiss
exhaustive top-10 search of all items against all (``IndexFlatL2``, the
reference cost of touching every pair once), and NMI (k = number of classes).
Prints a markdown table; asserts nothing.

    python benchmarks/retrieval_scale.py                      # both structures, 60k items
    python benchmarks/retrieval_scale.py --structures sop --items 6050 --no-nmi
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

import faiss
import numpy as np
import torch
import torch.nn.functional as F

from catride_core.retrieval.metrics import nmi, rank_metrics

SOP_ITEMS, SOP_CLASSES = 60_502, 11_316
CUB_CLASSES = 10
RECALL_AT = (1, 2, 4, 8)
FAISS_K = 10
MEASUREMENTS = ("rank_metrics", "faiss", "nmi")


def synthetic_set(structure: str, n_items: int, dim: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Unit embeddings and labels with the structure's class sizes, items in random order."""
    generator = torch.Generator().manual_seed(seed)
    embeddings = F.normalize(torch.randn(n_items, dim, generator=generator), dim=1)
    if structure == "sop":
        n_classes = max(1, round(n_items * SOP_CLASSES / SOP_ITEMS))
        extra = n_items - 2 * n_classes
        chosen = torch.multinomial(torch.ones(n_classes), extra, replacement=True, generator=generator)
        sizes = 2 + torch.bincount(chosen, minlength=n_classes)
    else:
        sizes = torch.full((CUB_CLASSES,), n_items // CUB_CLASSES)
    labels = torch.arange(len(sizes)).repeat_interleave(sizes)
    return embeddings[: len(labels)], labels[torch.randperm(len(labels), generator=generator)]


def peak_rss_mib() -> float:
    """High-water mark of this process's resident memory (ru_maxrss is KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure(structure: str, what: str, n_items: int, dim: int, block_size: int, seed: int) -> dict:
    """One measurement, meant to run alone in its process."""
    embeddings, labels = synthetic_set(structure, n_items, dim, seed)
    n_items, n_classes = len(labels), int(labels.unique().numel())
    data_rss = peak_rss_mib()
    load = os.getloadavg()[0]
    start = time.perf_counter()
    if what == "rank_metrics":
        own = torch.arange(n_items)
        per_query = rank_metrics(embeddings, labels, embeddings, labels, own, RECALL_AT, block_size)
        values = {name: round(100 * per_query[name].mean().item(), 4) for name in per_query}
    elif what == "faiss":
        data = np.ascontiguousarray(embeddings.numpy())
        index = faiss.IndexFlatL2(dim)
        index.add(data)
        index.search(data, FAISS_K)
        values = {}
    else:
        values = {"NMI": round(100 * nmi(embeddings, labels, n_classes, seed), 4)}
    seconds = time.perf_counter() - start
    return {
        "structure": structure, "what": what, "items": n_items, "classes": n_classes,
        "seconds": seconds, "peak_rss_mib": peak_rss_mib(), "data_rss_mib": data_rss,
        "load_before": load, "load_after": os.getloadavg()[0], "values": values,
    }


def run_in_fresh_process(structure: str, what: str, args: argparse.Namespace) -> dict:
    command = [
        sys.executable, __file__, "--child", structure, what, "--items", str(args.items),
        "--dim", str(args.dim), "--block-size", str(args.block_size), "--seed", str(args.seed),
    ]
    done = subprocess.run(command, check=True, capture_output=True, text=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def table(results: dict[tuple[str, str], dict]) -> str:
    columns = [
        "labels", "items", "classes", "R@K + mAP + mAP@R", "peak RSS", "faiss top-10 search", "ratio", "NMI",
        "NMI peak RSS",
    ]
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for structure in dict.fromkeys(key[0] for key in results):
        ranks, search = results[(structure, "rank_metrics")], results[(structure, "faiss")]
        clustering = results.get((structure, "nmi"))
        nmi_cells = "- | -"
        if clustering:
            nmi_cells = f"{clustering['seconds']:.1f} s | {clustering['peak_rss_mib'] / 1024:.2f} GB"
        lines.append(
            f"| {structure} | {ranks['items']:,} | {ranks['classes']:,} | {ranks['seconds']:.1f} s "
            f"| {ranks['peak_rss_mib'] / 1024:.2f} GB | {search['seconds']:.1f} s "
            f"(peak {search['peak_rss_mib'] / 1024:.2f} GB) | {ranks['seconds'] / search['seconds']:.2f}x "
            f"| {nmi_cells} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--structures", nargs="+", choices=("sop", "cub"), default=["sop", "cub"])
    parser.add_argument("--items", type=int, default=SOP_ITEMS, help="queries = gallery; cub: 10 x (items // 10)")
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--block-size", type=int, default=1024, help="evaluate.block_size")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-nmi", action="store_true", help="skip NMI (minutes with k = 11,316)")
    parser.add_argument("--child", nargs=2, metavar=("STRUCTURE", "WHAT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        structure, what = args.child
        print(json.dumps(measure(structure, what, args.items, args.dim, args.block_size, args.seed)))
        return

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; faiss {faiss.__version__}, "
          f"{faiss.omp_get_max_threads()} threads; {os.cpu_count()} CPUs; block_size {args.block_size}")
    results = {}
    for structure in args.structures:
        for what in MEASUREMENTS[:2] if args.no_nmi else MEASUREMENTS:
            result = run_in_fresh_process(structure, what, args)
            results[(structure, what)] = result
            print(
                f"{structure:4s} {what:13s} {result['seconds']:8.1f} s  "
                f"peak RSS {result['peak_rss_mib']:6.0f} MiB "
                f"(data alone {result['data_rss_mib']:.0f} MiB)  load {result['load_before']:.2f} -> "
                f"{result['load_after']:.2f}  {result['values']}",
                flush=True,
            )
    print()
    print(table(results))


if __name__ == "__main__":
    main()
