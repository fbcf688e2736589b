"""The SPC-2 batch sampler of RobRank (docs/method.md section 1)."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch
from torch.utils.data import Sampler


class SPC2Sampler(Sampler[list[int]]):
    """Batches of P (anchor, same-class partner) pairs, laid out [a1, p1, a2, p2, ...].

    One epoch uses every item once as an anchor, in a random order; each
    anchor's partner is a random *other* item of its class. The order depends
    only on ``(seed, epoch)``: call ``set_epoch`` before iterating, so a resumed
    or multi-process run sees the same batches.

    Args:
        labels: class of every item. Shape: (N,)
        pairs_per_batch: P; the last batch of an epoch may hold fewer pairs.
        seed: base seed.
    """

    def __init__(self, labels: np.ndarray, pairs_per_batch: int, seed: int) -> None:
        labels = np.asarray(labels)
        if pairs_per_batch < 1:
            raise ValueError(f"pairs_per_batch must be >= 1, got {pairs_per_batch}")
        self.pairs_per_batch = pairs_per_batch
        self.seed = seed
        self.epoch = 0
        self._members = {int(c): np.flatnonzero(labels == c) for c in np.unique(labels)}
        self._labels = labels
        lonely = [c for c, m in self._members.items() if len(m) < 2]
        if lonely:
            raise ValueError(f"SPC-2 needs >= 2 items per class; classes {lonely[:5]} have one")

    def set_epoch(self, epoch: int) -> None:
        """Choose the epoch whose batches the next iteration yields."""
        self.epoch = epoch

    def __len__(self) -> int:
        return -(-len(self._labels) // self.pairs_per_batch)

    def __iter__(self) -> Iterator[list[int]]:
        rng = np.random.default_rng([self.seed, self.epoch])
        anchors = rng.permutation(len(self._labels))
        partners = np.empty_like(anchors)
        for i, anchor in enumerate(anchors):
            members = self._members[int(self._labels[anchor])]
            # draw among the other members: index into members-without-anchor
            pick = rng.integers(len(members) - 1)
            partner = members[pick]
            partners[i] = partner if partner != anchor else members[-1]
        pairs = torch.from_numpy(np.stack([anchors, partners], axis=1))
        for start in range(0, len(anchors), self.pairs_per_batch):
            yield pairs[start : start + self.pairs_per_batch].reshape(-1).tolist()
