"""Robustness curves: the same attacks at several budgets eps, on a few spread test images.

Each point is one run of ``attacks.runner.run_attacks`` (the code of the
attack stage) with only ``eps`` changed, so a point at the attack stage's eps
and on the same queries gives the attack stage's value.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import pandas as pd
from torch import Tensor, nn
from torch.utils.data import Dataset, Subset

from catride_core.attacks.base import AttackBudget
from catride_core.attacks.queries import spread_first
from catride_core.attacks.runner import run_attacks


def eps_sweep(
    attacks: Sequence[str],
    model: nn.Module,
    images: Dataset,
    labels: Tensor,
    budget: AttackBudget,
    eps_values: Sequence[float],
    seed: int,
    n_queries: int,
    progress: bool = False,
    num_workers: int = 0,
) -> pd.DataFrame:
    """Every score of ``attacks`` at every eps, on ``n_queries`` test images spread over the split.

    The test split is reordered by ``queries.spread_first`` (the gallery stays
    the whole split) and the first ``n_queries`` are attacked at each eps with
    ``budget``'s step size, steps and target counts (no steps at eps = 0,
    where none could move an image: the adversarial value is the clean one).

    Args:
        attacks: identifier-safe attack names (``names.ATTACKS``).
        model: images in [0, 1] -> unit-norm embeddings.
        images: the whole test split, a Dataset of (image, label) items.
        labels: its classes. Shape: (N,)
        budget: the attack budget; its ``eps`` is replaced by each of ``eps_values``.
        eps_values: the budgets of the curve, in [0, 1] pixel units.
        seed: seed of the attacks' targets (the same targets at every eps).
        n_queries: attacked images (at most N).
        progress: one progress bar per attack and eps.
        num_workers: DataLoader workers reading the images.

    Returns:
        one row per (eps, attack, score): ``eps``, ``attack``, ``score``,
        ``clean``, ``adversarial`` (per-query means) and ``n_queries``.
    """
    order = spread_first(len(labels), min(n_queries, len(labels)))
    reordered, reordered_labels = Subset(images, order.tolist()), labels[order]
    rows = []
    for eps in eps_values:
        # at eps = 0 no step could move an image: skip the PGD iterations, score the clean images
        point = dataclasses.replace(budget, eps=eps, steps=budget.steps if eps > 0 else 0)
        results = run_attacks(attacks, model, reordered, reordered_labels, point, seed, max_queries=n_queries,
                              progress=progress, num_workers=num_workers)
        for name, result in results.items():
            rows += [{"eps": eps, "attack": name, "score": score, "clean": result.clean[score],
                      "adversarial": result.adversarial[score], "n_queries": result.n_queries}
                     for score in result.adversarial]
    return pd.DataFrame(rows, columns=["eps", "attack", "score", "clean", "adversarial", "n_queries"])


def wide(points: pd.DataFrame) -> pd.DataFrame:
    """One model's sweep as one row per eps, for DVC plots: the adversarial value of each score in its own column.

    Columns: ``eps``, ``n_queries``, then per score (in the order of
    ``points``) its display name (``ES:R``, ``CA+`` ...: the adversarial mean)
    and ``<score>/clean``.
    """
    scores = list(dict.fromkeys(points["score"]))
    table = pd.DataFrame({"eps": list(dict.fromkeys(points["eps"]))})
    table["n_queries"] = int(points["n_queries"].max()) if len(points) else 0
    for score in scores:
        rows = points[points["score"] == score].set_index("eps")
        table[score] = table["eps"].map(rows["adversarial"])
        table[f"{score}/clean"] = table["eps"].map(rows["clean"])
    return table
