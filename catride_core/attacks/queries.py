"""Which test images a small attack run (the eps sweep, the retrieval examples) attacks: spread over the split."""

from __future__ import annotations

import torch
from torch import Tensor


def spread_first(n_items: int, n_first: int) -> Tensor:
    """An order of ``n_items`` items whose first ``n_first`` are spread evenly over them, the rest following in order.

    The attack runner attacks the first Q items of the test split; test splits
    are often in class order (mnist5k is), so the first Q would share a class.
    Reordering the split instead puts Q items from all over it first, while
    the gallery (the whole split) stays the same set.

    Args:
        n_items: N, the size of the test split.
        n_first: Q, how many spread items come first (at most N).

    Returns:
        a permutation of range(N) starting with round(linspace(0, N - 1, Q)). Shape: (N,) int64
    """
    if not 0 <= n_first <= n_items:
        raise ValueError(f"{n_first} spread items asked of {n_items}")
    first = torch.linspace(0, n_items - 1, n_first, dtype=torch.float64).round().long().unique()
    rest = torch.ones(n_items, dtype=torch.bool)
    rest[first] = False
    return torch.cat([first, torch.arange(n_items)[rest]])
