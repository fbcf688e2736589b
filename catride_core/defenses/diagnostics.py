"""Collapse diagnostics on the test set (METHOD.md section 6): is the model collapsing?"""

from __future__ import annotations

import torch
from torch import Tensor

from catride_core.data.sampler import SPC2Sampler
from catride_core.distances import paired_distances
from catride_core.losses import collapseness, mine_triplets
from catride_core.retrieval.robustness import embedding_spread
from catride_core.runtime import seeded_generator


def collapse_diagnostics(
    embeddings: Tensor,
    labels: Tensor,
    inverse_temperature: float,
    seed: int,
    pairs_per_batch: int = 128,
    margin: float = 0.2,
) -> dict[str, float]:
    """Collapseness of mined test triplets and the embedding spread.

    The test items are laid out in SPC-2 batches (``SPC2Sampler`` with ``seed``,
    epoch 0), each batch is mined with the ``semihard`` miner on these
    embeddings, and C = M_lambda(D_ap) - M_lambda(D_an) is computed per batch;
    ``collapseness`` is its mean over batches (C > 0: far positives lie beyond
    far negatives). A batch of a single class has no negatives and is skipped.
    ``spread`` is the mean distance between two distinct random test embeddings.

    Args:
        embeddings: test embeddings. Shape: (N, D)
        labels: their classes. Shape: (N,)
        inverse_temperature: lambda of M_lambda.
        seed: seed of the batches, the miner and the spread's pairs.
        pairs_per_batch: P of the SPC-2 batches.
        margin: semihard window.

    Raises:
        ValueError: no batch holds two classes.
    """
    labels = labels.cpu()
    sampler = SPC2Sampler(labels.numpy(), pairs_per_batch, seed)
    sampler.set_epoch(0)
    generator = seeded_generator(seed, 3)
    values = []
    for batch in sampler:
        index = torch.as_tensor(batch)
        batch_labels = labels[index]
        if bool((batch_labels == batch_labels[0]).all()):
            continue
        batch_embeddings = embeddings[index.to(embeddings.device)]
        a, p, n = mine_triplets(batch_embeddings, batch_labels.to(embeddings.device), "semihard", margin, generator)
        d_ap = paired_distances(batch_embeddings[a], batch_embeddings[p])
        d_an = paired_distances(batch_embeddings[a], batch_embeddings[n])
        values.append(float(collapseness(d_ap, d_an, inverse_temperature)))
    if not values:
        raise ValueError("collapse diagnostics need a batch with two classes; every SPC-2 batch held one")
    return {"collapseness": sum(values) / len(values), "spread": embedding_spread(embeddings, seed)}
