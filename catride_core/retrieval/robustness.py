"""Robustness scores from the ranking attacks (docs/method.md section 6): ERS and ARS.

Scores are keyed by the attacks' display names, ``names.SCORES``: "CA+", "CA-",
"QA+", "QA-", "TMA", "ES:D", "ES:R", "LTM", "GTM", "GTT". CA/QA/ES:R/LTM/GTM/GTT
are in %, TMA is a cosine and ES:D a distance in [0, 2]. The embedding spread
that ARS takes lives in ``retrieval.collapse``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from catride_core.names import ATTACK_SCORES, REFERENCE_SCORES, SCORES

#: score -> +1 where a higher value means a more robust model, -1 where a lower one does (its ERS term's direction)
ROBUST_DIRECTION: dict[str, int] = {
    "CA+": 1, "CA-": -1, "QA+": 1, "QA-": -1, "TMA": -1, "ES:D": -1, "ES:R": 1, "LTM": 1, "GTM": 1, "GTT": 1,
    "GTM:ref": 1, "ES:D:ref": -1, "LTM:ref": 1,
}


def _require(values: Mapping[str, float], what: str) -> None:
    missing = [name for name in SCORES if name not in values]
    if missing:
        raise KeyError(f"{what} lacks the scores {missing}")
    infinite = [name for name in SCORES if not math.isfinite(values[name])]
    if infinite:
        # min(1, nan) is 1: a NaN would otherwise count as fully robust
        raise ValueError(f"{what}: the scores {infinite} are not finite")


def attack_result_problem(name: str, result: Mapping[str, Any]) -> str | None:
    """What is wrong with an attack's saved result, or None: ``name``'s, on Q >= 1 queries, exactly its scores, finite.

    Args:
        name: the attack the file should hold (``es``).
        result: the file's content: ``attack``, ``n_queries``, ``clean`` and ``adversarial`` (display score -> value).
    """
    if result.get("attack") != name:
        return f"holds attack {result.get('attack')!r}, expected {name!r}"
    n_queries = result.get("n_queries")
    if not isinstance(n_queries, int) or isinstance(n_queries, bool) or n_queries < 1:
        return f"'n_queries' is {n_queries!r}, not a count of attacked queries"
    expected = set(ATTACK_SCORES[name])
    for side in ("clean", "adversarial"):
        values = result.get(side)
        if not isinstance(values, Mapping):
            return f"has no {side!r} scores"
        if set(values) != expected:
            return f"{side!r} holds the scores {sorted(values)}, {name} reports {sorted(expected)}"
        bad = [score for score, value in values.items() if not isinstance(value, (int, float)) or not math.isfinite(value)]
        if bad:
            return f"{side!r} scores {bad} are not finite numbers"
    return None


def summary_problem(metrics: Mapping[str, Any]) -> str | None:
    """What is wrong with a robustness result's ERS and ARS, or None: a composite given needs all ten finite scores.

    Args:
        metrics: a ``robustness`` result: ``ERS``, ``ARS`` (None for a subset of attacks) and ``adversarial``.
    """
    given = [key for key in ("ERS", "ARS") if metrics.get(key) is not None]
    adversarial = metrics.get("adversarial")
    scores = adversarial if isinstance(adversarial, Mapping) else {}
    bad = [name for name in SCORES if not _finite(scores.get(name))]
    if given and bad:
        return f"gives {' and '.join(given)}, but the adversarial scores {bad} are not finite numbers"
    return None


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


#: how far a per-query column's mean may lie from the saved (4-decimal) mean of the same run
_MEAN_TOLERANCE = 1e-4


def per_query_problem(result: Mapping[str, Any], table: Mapping[str, np.ndarray]) -> str | None:
    """What is wrong with an attack's per-query results, or None.

    They must hold one row per attacked query, in order (``index`` 0..Q-1, so
    row i is test image i for every attack and every model), finite values,
    and means equal to the saved ones (the same run).

    Args:
        result: the attack's saved result, already passed by ``attack_result_problem``.
        table: column -> values: ``index`` and ``<score>/clean``, ``<score>/adversarial`` of each of its scores.
    """
    n_queries = result["n_queries"]
    if not np.array_equal(table["index"], np.arange(n_queries)):
        return f"the rows are not the {n_queries} attacked queries 0..{n_queries - 1} in order"
    for side in ("clean", "adversarial"):
        for score, saved in result[side].items():
            values = np.asarray(table[f"{score}/{side}"], dtype=np.float64)
            if not np.isfinite(values).all():
                return f"column {score}/{side} holds values that are not finite"
            if abs(values.mean() - saved) > _MEAN_TOLERANCE:
                return f"the mean of column {score}/{side} is {values.mean():.4f}, the attack's JSON says {saved}"
    return None


def ers(values: Mapping[str, float]) -> float:
    """Empirical robustness score (RobRank) of the adversarial values, in %.

    ERS = mean of [2 CA+, 100 - CA-, 2 QA+, 100 - QA-, 100 (1 - TMA),
    100 (2 - ES:D) / 2, ES:R, LTM, GTM, GTT]. Each term is 100 for a model the
    attack cannot move off its assumed clean level (50 for CA+/QA+, 0 for TMA).
    """
    _require(values, "ers")
    terms = [
        2.0 * values["CA+"],
        100.0 - values["CA-"],
        2.0 * values["QA+"],
        100.0 - values["QA-"],
        100.0 * (1.0 - values["TMA"]),
        100.0 * (2.0 - values["ES:D"]) / 2.0,
        values["ES:R"],
        values["LTM"],
        values["GTM"],
        values["GTT"],
    ]
    return sum(terms) / len(terms)


def ers_reference(values: Mapping[str, float]) -> float | None:
    """ERS:ref, ERS with every reference-rule score in place of the score it stands in for, in %.

    GTM:ref, ES:D:ref and LTM:ref replace GTM, ES:D and LTM: what a table
    measured through RobRank's attack code reports as ERS (docs/method.md
    section 6.4); None unless all three reference attacks were run.
    """
    if not all(reference in values for reference in REFERENCE_SCORES):
        return None
    return ers(dict(values) | {score: values[reference] for reference, score in REFERENCE_SCORES.items()})


def _ratio(numerator: float, denominator: float) -> float:
    """numerator / denominator, and 1 where the clean level leaves the attack nothing to take."""
    return numerator / denominator if denominator > 0 else 1.0


def ars(clean: Mapping[str, float], adversarial: Mapping[str, float], r1_clean: float, spread: float) -> float:
    """Attack-relative robustness score, in % (0..100). This is the project's own definition.

    The CA-TRIDE paper proposes a metric to replace ERS without a formula we
    could use, so the project defines ARS itself (docs/method.md section 6). ERS
    assumes fixed clean levels (50 for CA+/QA+, 0 for TMA) and never looks at
    clean retrieval, so a collapsed model whose embeddings barely move scores
    well on ES:D, TMA, CA- and QA-. ARS instead measures each attack against
    the same model's clean value on the same targets, the embedding shift
    against the model's own embedding spread, and scales by clean R@1:

        r(CA+) = min(1, CA+_adv / CA+_clean)                  r(QA+) likewise
        r(CA-) = min(1, (100 - CA-_adv) / (100 - CA-_clean))  r(QA-) likewise
        r(TMA) = clip((1 - TMA_adv) / (1 - TMA_clean), 0, 1)
        r(ES:D) = clip(1 - ES:D / spread, 0, 1)
        r(ES:R), r(LTM), r(GTM) = min(1, R@1_adv / R@1_clean)
        r(GTT) = GTT / 100
        ARS = R@1_clean * mean(r)

    R@1_clean of ES:R/LTM/GTM is each attack's own clean value (benign R@1 of
    the attacked queries). A ratio whose clean level is already the attack's
    worst case (denominator 0, e.g. CA+_clean = 0) counts as 1: the attack has
    nothing left to take.

    Args:
        clean: display score name -> clean value on the attack's targets.
        adversarial: display score name -> adversarial value.
        r1_clean: benign R@1 of the model, in %.
        spread: mean distance between two distinct random test embeddings (> 0).
    """
    _require(clean, "ars clean values")
    _require(adversarial, "ars adversarial values")
    if spread <= 0:
        raise ValueError(f"embedding spread must be > 0, got {spread}")
    ratios = [
        min(1.0, _ratio(adversarial["CA+"], clean["CA+"])),
        min(1.0, _ratio(100.0 - adversarial["CA-"], 100.0 - clean["CA-"])),
        min(1.0, _ratio(adversarial["QA+"], clean["QA+"])),
        min(1.0, _ratio(100.0 - adversarial["QA-"], 100.0 - clean["QA-"])),
        min(1.0, max(0.0, _ratio(1.0 - adversarial["TMA"], 1.0 - clean["TMA"]))),
        min(1.0, max(0.0, 1.0 - adversarial["ES:D"] / spread)),
        min(1.0, _ratio(adversarial["ES:R"], clean["ES:R"])),
        min(1.0, _ratio(adversarial["LTM"], clean["LTM"])),
        min(1.0, _ratio(adversarial["GTM"], clean["GTM"])),
        adversarial["GTT"] / 100.0,
    ]
    return r1_clean * sum(ratios) / len(ratios)


def robustness_summary(
    clean: Mapping[str, float], adversarial: Mapping[str, float], r1_clean: float, spread: float
) -> dict[str, float | None]:
    """ERS and ARS where every score is present, ``None`` where some attack was not run.

    A subset of attacks (``attack.names``) is a legitimate quick run; its
    scores are still reported one by one, but a composite score over missing
    terms would be a different number under the same name.
    """
    complete = all(name in adversarial and name in clean for name in SCORES)
    return {
        "ERS": ers(adversarial) if complete else None,
        "ARS": ars(clean, adversarial, r1_clean, spread) if complete else None,
    }
