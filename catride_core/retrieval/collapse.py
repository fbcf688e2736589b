"""Collapse: the soft maximum M_lambda, collapseness C, the embedding spread and the test-set diagnostics.

C = M_lambda(D_ap) - M_lambda(D_an) is defined in docs/method.md section 4.4,
where CA-TRIDE bounds its perturbations with it; the same statistic, measured
on mined test triplets next to the embedding spread, is the collapse
diagnostic of docs/method.md section 6. Every defense logs C of its training
triplets, so the definition lives here once, with the evaluation.
"""

from __future__ import annotations

import torch
from torch import Tensor

from catride_core.data.sampler import SPC2Sampler
from catride_core.distances import full_precision, no_autocast, paired_distances
from catride_core.errors import DataError
from catride_core.losses import mine_triplets
from catride_core.runtime import seeded_generator

# The diagnostic is measured the same way for every model, whatever its training settings, so that
# the values of all models compare; neither is a params.yaml key.
#: P of the test-set SPC-2 batches: the reference fine-tuning batch (finetune.pairs_per_batch's
#: default), so that a batch's C on the test set reads like the C logged per training step
DIAGNOSTIC_PAIRS_PER_BATCH = 128
#: semihard window of the diagnostic's miner: the triplet margin m of docs/method.md section 3
DIAGNOSTIC_MARGIN = 0.2


def soft_max_mean(distances: Tensor, inverse_temperature: float) -> Tensor:
    """M_lambda(D) = sum_i w_i D_i / sum_i w_i with w_i = exp(lambda (D_i - max_j D_j)).

    A soft maximum: the mean as lambda -> 0, the max as lambda -> inf. The
    weights carry gradients; subtracting the max only keeps exp() finite.

    Shape:
        distances: (B,) -> scalar
    """
    with no_autocast(distances):
        distances = full_precision(distances)
        weights = torch.exp(inverse_temperature * (distances - distances.max()))
        return (weights * distances).sum() / weights.sum()


def collapseness(d_ap: Tensor, d_an: Tensor, inverse_temperature: float) -> Tensor:
    """C = M(D_ap) - M(D_an); C > 0 means the far positives lie beyond the far negatives.

    Shape:
        d_ap, d_an: (B,) -> scalar
    """
    return soft_max_mean(d_ap, inverse_temperature) - soft_max_mean(d_an, inverse_temperature)


def embedding_spread(embeddings: Tensor, generator: torch.Generator | int, pairs: int = 10_000) -> float:
    """Mean distance between two distinct random embeddings (pairs drawn with replacement).

    ARS measures ES:D against it (docs/method.md section 6).

    Args:
        embeddings: test embeddings. Shape: (N, D), N >= 2
        generator: CPU generator, or a seed for a fresh one.
        pairs: number of random pairs.
    """
    n = embeddings.shape[0]
    if n < 2:
        raise ValueError(f"embedding spread needs at least 2 embeddings, got {n}")
    if isinstance(generator, int):
        generator = torch.Generator().manual_seed(generator)
    first = torch.randint(0, n, (pairs,), generator=generator)
    second = torch.randint(0, n - 1, (pairs,), generator=generator)
    # draw the partner from the n - 1 others: skip over the first item's slot
    second = second + (second >= first).long()
    device = embeddings.device
    return float(paired_distances(embeddings[first.to(device)], embeddings[second.to(device)]).mean())


def collapse_diagnostics(
    embeddings: Tensor,
    labels: Tensor,
    diagnostic_inverse_temperature: float,
    seed: int,
    pairs_per_batch: int = DIAGNOSTIC_PAIRS_PER_BATCH,
    margin: float = DIAGNOSTIC_MARGIN,
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
        diagnostic_inverse_temperature: lambda of M_lambda
            (``evaluate.diagnostic_inverse_temperature``).
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
        values.append(float(collapseness(d_ap, d_an, diagnostic_inverse_temperature)))
    if not values:
        raise DataError("collapse diagnostics need a batch with two classes; every SPC-2 batch of the test split held one")
    return {"collapseness": sum(values) / len(values), "spread": embedding_spread(embeddings, seed)}
