"""Confidence intervals of the robustness scores: a percentile bootstrap over the attacked queries.

Efron & Tibshirani, "An Introduction to the Bootstrap", 1993, chapter 13 (the
percentile interval). docs/method.md section 6.5 says what is resampled and
what is held fixed.

A resample draws Q query positions with replacement from the Q attacked
queries. The draws depend on the seed and Q alone, never on the model or the
attack: position i is the same test image for every attack of every model
(each attacks the first Q test images), so replicate r of every score of every
model is computed on the same images, and two models' replicates can be
compared pairwise.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from catride_core.retrieval.robustness import ers_reference, robustness_summary

#: bound on the values gathered at once when resampling (float64: 128 MiB)
_GATHER_LIMIT = 1 << 24


@dataclass(frozen=True)
class Replicates:
    """One model's robustness scores in every resample.

    Attributes:
        adversarial: display score -> its adversarial mean over each resample's queries.
        ers: ERS of each resample; None when some score was not attacked (as in ``robustness_summary``).
        ars: ARS of each resample, likewise.
        ers_reference: ERS:ref of each resample (``robustness.ers_reference``); None when the
            reference-rule attack or some ERS score was not attacked.

    Shape:
        every array: (R,), R resamples
    """

    adversarial: dict[str, np.ndarray]
    ers: np.ndarray | None
    ars: np.ndarray | None
    ers_reference: np.ndarray | None = None


def resample_indices(seed: int, n_queries: int, resamples: int) -> np.ndarray:
    """The query positions of every resample: ``resamples`` draws of ``n_queries`` positions with replacement.

    Drawn from ``np.random.default_rng(seed)``, so they depend on the seed and
    the number of queries only: every attack and every model given the same
    two numbers gets the same resamples (what makes a comparison paired).

    Shape:
        returns (resamples, n_queries), values in [0, n_queries)
    """
    if n_queries < 1 or resamples < 1:
        raise ValueError(f"need at least one query and one resample, got {n_queries} and {resamples}")
    return np.random.default_rng(seed).integers(0, n_queries, size=(resamples, n_queries))


def resampled_means(per_query: Mapping[str, np.ndarray], indices: np.ndarray) -> dict[str, np.ndarray]:
    """The mean of every per-query column over the queries of each resample.

    Args:
        per_query: score name -> its value on each attacked query. Shape: (Q,) each
        indices: query positions of each resample (``resample_indices``); the
            identity ``arange(Q)[None]`` gives the plain means. Shape: (R, Q)

    Returns:
        score name -> its mean in each resample. Shape: (R,) each
    """
    if not per_query:
        return {}
    names = list(per_query)
    values = np.stack([np.asarray(per_query[name], dtype=np.float64) for name in names], axis=1)  # (Q, S)
    if indices.ndim != 2 or values.shape[0] != indices.shape[1]:
        raise ValueError(f"indices {indices.shape} must be (R, Q) for {values.shape[0]} queries")
    means = np.empty((indices.shape[0], len(names)))
    block = max(1, _GATHER_LIMIT // values.size)  # resamples gathered at once
    for start in range(0, indices.shape[0], block):
        means[start : start + block] = values[indices[start : start + block]].mean(axis=1)
    return {name: means[:, column] for column, name in enumerate(names)}


def mean_intervals(
    per_query: Mapping[str, np.ndarray], seed: int, resamples: int, confidence: float
) -> dict[str, tuple[float, float]]:
    """The percentile interval of each column's mean over its N queries (the benign metrics' intervals).

    Each resample draws N of the N queries with replacement
    (``resample_indices(seed, N, resamples)``), the same draws for every column.

    Shape:
        per_query: each (N,), N >= 1
    """
    if not per_query:
        return {}
    n_queries = len(next(iter(per_query.values())))
    means = resampled_means(per_query, resample_indices(seed, n_queries, resamples))
    return {name: percentile_interval(values, confidence) for name, values in means.items()}


def bootstrap_replicates(
    clean: Mapping[str, np.ndarray],
    adversarial: Mapping[str, np.ndarray],
    indices: np.ndarray,
    r1_clean: float,
    spread: float,
) -> Replicates:
    """Every score's adversarial mean, ERS, ARS and ERS:ref on each resample of the attacked queries.

    The clean and adversarial means of a resample are taken over the same
    queries; ERS and ARS come from them through ``robustness_summary``, with
    the model's benign R@1 and embedding spread (whole test set) held fixed,
    and ERS:ref through ``ers_reference`` (where ERS and the reference scores exist).

    Args:
        clean: display score -> its clean value on each attacked query. Shape: (Q,) each
        adversarial: display score -> its adversarial value on each attacked query. Shape: (Q,) each
        indices: query positions of each resample. Shape: (R, Q)
        r1_clean: benign R@1 of the model, in %.
        spread: the model's embedding spread (> 0).
    """
    clean_means = resampled_means(clean, indices)
    adversarial_means = resampled_means(adversarial, indices)
    rows = [
        ({name: float(means[r]) for name, means in clean_means.items()},
         {name: float(means[r]) for name, means in adversarial_means.items()})
        for r in range(indices.shape[0])
    ]
    summaries = [robustness_summary(clean_row, adversarial_row, r1_clean, spread) for clean_row, adversarial_row in rows]
    # ERS:ref exists where ERS does and the reference-rule attack was run
    references = [None if summary["ERS"] is None else ers_reference(row)
                  for (_, row), summary in zip(rows, summaries, strict=True)]

    def column(key: str) -> np.ndarray | None:
        return None if summaries[0][key] is None else np.array([summary[key] for summary in summaries])

    ers_ref = None if references[0] is None else np.array(references)
    return Replicates(adversarial=adversarial_means, ers=column("ERS"), ars=column("ARS"), ers_reference=ers_ref)


def _check_confidence(confidence: float) -> None:
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")


def percentile_interval(replicates: np.ndarray, confidence: float) -> tuple[float, float]:
    """The percentile interval: the (1 - c)/2 and (1 + c)/2 quantiles of the replicates.

    Quantiles interpolate linearly between order statistics (numpy's default):
    the p quantile of R sorted values x is x[h] + (h - floor h)(x[h+1] - x[h]) at h = (R - 1) p.

    Shape:
        replicates: (R,)
    """
    _check_confidence(confidence)
    replicates = np.asarray(replicates, dtype=np.float64)
    if replicates.ndim != 1 or len(replicates) == 0 or not np.isfinite(replicates).all():
        raise ValueError(f"replicates must be a non-empty row of finite numbers, got shape {replicates.shape}")
    low, high = np.quantile(replicates, [(1.0 - confidence) / 2.0, (1.0 + confidence) / 2.0])
    return float(low), float(high)


def intervals(replicates: Replicates, confidence: float) -> dict[str, tuple[float, float] | None]:
    """The percentile interval of ``ERS``, ``ARS``, ``ERS:ref`` and every adversarial score; None for a composite
    that is None."""
    found: dict[str, tuple[float, float] | None] = {
        key: None if values is None else percentile_interval(values, confidence)
        for key, values in (("ERS", replicates.ers), ("ARS", replicates.ars), ("ERS:ref", replicates.ers_reference))
    }
    return found | {score: percentile_interval(values, confidence) for score, values in replicates.adversarial.items()}


def paired_difference(
    first_replicates: np.ndarray, second_replicates: np.ndarray, confidence: float
) -> tuple[float, float]:
    """Percentile interval of first - second, replicate by replicate (both on the same resamples).

    Pairing takes out what the two models share: a hard resample of queries
    lowers both, so the difference varies less than either score.

    Shape:
        first_replicates, second_replicates: (R,), replicate r of both on resample r
    """
    first = np.asarray(first_replicates, dtype=np.float64)
    second = np.asarray(second_replicates, dtype=np.float64)
    if first.shape != second.shape:
        raise ValueError(f"paired replicates must have one shape, got {first.shape} and {second.shape}")
    return percentile_interval(first - second, confidence)


def is_different(low: float, high: float) -> bool:
    """Whether an interval of a difference excludes 0 strictly (an interval touching 0 does not)."""
    return low > 0.0 or high < 0.0
