"""How much each documented quirk of RobRank's attack code moves a published column, on one model.

docs/method.md section 8 lists the reference code's bugs that catride does not
repeat. Published numbers were measured through them, so before setting a run
beside a published table one must know which of them matter. This script
attacks the first ``--queries`` test images of a prepared dataset with a
checkpoint, once with catride's attack and once with the quirk put back, on the
same queries and targets, and prints both values, their difference and the
half-width of the 95 % bootstrap interval of catride's value:

- **GTM's target** (bug 1): the compatibility attack ``gtm_ref``;
- **ES:D one step early** (bug 3): the reference reports the shift of the
  iterate before the last step: the compatibility attack ``es_ref``;
- **LTM's self slot** (bug 2): the reference keeps the query's own clean
  embedding among the positives: the compatibility attack ``ltm_ref``.

CA/QA target draws and the self slot in clean ranks change only which random
target is drawn (uniform either way) or the clean values, which ERS does not
use; they are discussed, not measured, in docs/reproduction.md.

    python benchmarks/reference_quirks.py --data data/prepared --checkpoint models/none.pt --queries 10000
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from catride_core.artifacts.checkpoints import load_checkpoint
from catride_core.artifacts.prepared import load_prepared
from catride_core.attacks.base import AttackBudget, Gallery
from catride_core.attacks.runner import _attack_queries, build_attack
from catride_core.data.prepared import build_dataset
from catride_core.distributed import World
from catride_core.models.embedding import eval_mode
from catride_core.retrieval.bootstrap import (
    percentile_interval,
    resample_indices,
    resampled_means,
)


def half_width(values: np.ndarray, seed: int) -> float:
    means = resampled_means({"v": values}, resample_indices(seed, len(values), 1000))["v"]
    low, high = percentile_interval(means, 0.95)
    return (high - low) / 2


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, help="prepared dataset folder")
    parser.add_argument("--checkpoint", required=True, help="model checkpoint")
    parser.add_argument("--queries", type=int, default=2000, help="the first N test images are attacked")
    parser.add_argument("--eps", default="77/255")
    parser.add_argument("--step-size", default="3/255")
    parser.add_argument("--steps", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=250)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    from fractions import Fraction

    budget = AttackBudget(eps=float(Fraction(args.eps)), step_size=float(Fraction(args.step_size)), steps=args.steps,
                          batch_size=args.batch_size)
    data = load_prepared(args.data)
    model, _ = load_checkpoint(args.checkpoint, "cpu", data.meta)
    images = build_dataset(data, "test", train=False)
    labels = torch.as_tensor(data.labels("test"))
    world = World()
    runs = {
        "GTM": ("gtm", "GTM"),
        "GTM, reference target": ("gtm_ref", "GTM:ref"),
        "ES:D": ("es", "ES:D"),
        "ES:D, one step early": ("es_ref", "ES:D:ref"),
        "LTM": ("ltm", "LTM"),
        "LTM, own slot a positive": ("ltm_ref", "LTM:ref"),
    }
    found: dict[str, np.ndarray] = {}
    with eval_mode(model):
        embeddings = world.embed(model, images, budget.batch_size, torch.device("cpu"))
        gallery = Gallery(embeddings, labels, 1024)
        queries = torch.arange(min(args.queries, len(labels)))
        for label, (attack, score) in runs.items():
            began = time.perf_counter()
            result = _attack_queries(build_attack(attack, budget), model, images, gallery, queries, budget, args.seed,
                                     0, False, world)
            found[label] = np.asarray(result.per_query[f"{score}/adversarial"], dtype=np.float64)
            print(f"{label}: {found[label].mean():.4f} ({time.perf_counter() - began:.0f} s)", flush=True)
    print(f"\n{len(queries)} queries, {args.checkpoint}")
    print("| column | catride | with the quirk | difference | catride's 95 % half-width |")
    print("|---|---|---|---|---|")
    for ours, quirk in (("GTM", "GTM, reference target"), ("ES:D", "ES:D, one step early"),
                        ("LTM", "LTM, own slot a positive")):
        a, b = found[ours], found[quirk]
        print(f"| {ours} | {a.mean():.3f} | {b.mean():.3f} | {b.mean() - a.mean():+.3f} | {half_width(a, args.seed):.3f} |")


if __name__ == "__main__":
    main()
