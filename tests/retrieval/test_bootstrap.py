import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from catride_core.names import REFERENCE_SCORES, SCORES
from catride_core.retrieval import bootstrap
from catride_core.retrieval.bootstrap import (
    bootstrap_replicates,
    intervals,
    is_different,
    mean_intervals,
    paired_difference,
    percentile_interval,
    resample_indices,
    resampled_means,
)
from catride_core.retrieval.robustness import (
    ars,
    ers,
    ers_reference,
    robustness_summary,
)

#: where each score's per-query values live: CA/QA pranks and R@1s in %, TMA a cosine, ES:D a distance
RANGES = {"CA+": 100.0, "CA-": 100.0, "QA+": 100.0, "QA-": 100.0, "TMA": 1.0, "ES:D": 2.0,
          "ES:R": 100.0, "LTM": 100.0, "GTM": 100.0, "GTT": 100.0, "ES:D:ref": 2.0}


def per_query(rng, n_queries, scores=SCORES):
    """Random per-query clean and adversarial values of ``scores`` in their ranges (R@1-like scores 0 or 100)."""
    sides = {}
    for side in ("clean", "adversarial"):
        sides[side] = {}
        for score in scores:
            if score in ("ES:R", "LTM", "GTM", "GTT", "GTM:ref", "LTM:ref"):
                sides[side][score] = 100.0 * rng.integers(0, 2, n_queries)
            else:
                sides[side][score] = RANGES[score] * rng.random(n_queries)
    return sides["clean"], sides["adversarial"]


def test_resamples_depend_on_the_seed_and_the_number_of_queries_only():
    first = resample_indices(seed=3, n_queries=20, resamples=50)
    assert first.shape == (50, 20) and first.min() >= 0 and first.max() < 20
    assert np.array_equal(first, resample_indices(3, 20, 50))  # whichever model or attack asks
    assert not np.array_equal(first, resample_indices(4, 20, 50))
    # with replacement: 20 draws from 20 positions repeat one in all but 20!/20^20 ~ 2e-8 of the rows
    assert all(len(set(row)) < 20 for row in first)
    with pytest.raises(ValueError, match="at least one"):
        resample_indices(0, 0, 10)


def test_resampled_means_match_a_slow_loop(monkeypatch):
    rng = np.random.default_rng(0)
    columns = {"a": rng.random(7), "b": rng.normal(size=7)}
    indices = resample_indices(1, 7, 5)
    expected = {name: [sum(values[i] for i in row) / len(row) for row in indices] for name, values in columns.items()}
    all_at_once = resampled_means(columns, indices)
    monkeypatch.setattr(bootstrap, "_GATHER_LIMIT", 1)  # one resample gathered at a time
    for means in (all_at_once, resampled_means(columns, indices)):
        assert set(means) == {"a", "b"}
        for name in columns:
            assert means[name] == pytest.approx(expected[name], abs=1e-12)


def test_replicates_match_a_slow_loop_through_ers_and_ars():
    rng = np.random.default_rng(1)
    clean, adversarial = per_query(rng, 9)
    indices = resample_indices(0, 9, 6)
    replicates = bootstrap_replicates(clean, adversarial, indices, r1_clean=80.0, spread=1.3)
    for r, row in enumerate(indices):
        clean_means = {score: sum(clean[score][i] for i in row) / 9 for score in SCORES}
        adversarial_means = {score: sum(adversarial[score][i] for i in row) / 9 for score in SCORES}
        assert replicates.ers[r] == pytest.approx(ers(adversarial_means), abs=1e-9)
        assert replicates.ars[r] == pytest.approx(ars(clean_means, adversarial_means, 80.0, 1.3), abs=1e-9)
        for score in SCORES:
            assert replicates.adversarial[score][r] == pytest.approx(adversarial_means[score], abs=1e-12)
    # the resamples differ, so the replicates do
    assert len(set(replicates.ers)) > 1


def test_ers_reference_replicates_put_each_resamples_reference_scores_in_place():
    rng = np.random.default_rng(5)
    clean, adversarial = per_query(rng, 8, scores=(*SCORES, *REFERENCE_SCORES))
    indices = resample_indices(0, 8, 5)
    replicates = bootstrap_replicates(clean, adversarial, indices, r1_clean=80.0, spread=1.3)
    for r, row in enumerate(indices):
        means = {score: sum(adversarial[score][i] for i in row) / 8 for score in adversarial}
        replaced = {score: reference for reference, score in REFERENCE_SCORES.items()}
        substituted = {score: means[replaced.get(score, score)] for score in SCORES}
        assert replicates.ers_reference[r] == pytest.approx(ers(substituted), abs=1e-9)
        assert replicates.ers[r] == pytest.approx(ers(means), abs=1e-9)
    assert intervals(replicates, 0.8)["ERS:ref"] == percentile_interval(replicates.ers_reference, 0.8)
    # without one of the reference attacks, or without the rest of ERS, there is no ERS:ref
    del clean["LTM:ref"], adversarial["LTM:ref"]
    assert bootstrap_replicates(clean, adversarial, indices, 80.0, 1.3).ers_reference is None
    clean, adversarial = per_query(rng, 8, scores=("GTM", *REFERENCE_SCORES))
    assert bootstrap_replicates(clean, adversarial, indices, 80.0, 1.3).ers_reference is None
    assert ers_reference({**{r: 1.0 for r in REFERENCE_SCORES}, **{s: 0.0 for s in SCORES}}) is not None


def test_mean_intervals_resample_the_n_queries_of_every_column_alike():
    rng = np.random.default_rng(6)
    columns = {"R@1": 100.0 * rng.integers(0, 2, 30), "mAP": 100.0 * rng.random(30)}
    found = mean_intervals(columns, seed=4, resamples=200, confidence=0.9)
    indices = resample_indices(4, 30, 200)  # the same draws for every column: the seed and N alone
    for name, values in columns.items():
        slow = np.array([sum(values[i] for i in row) / 30 for row in indices])
        assert found[name] == pytest.approx(percentile_interval(slow, 0.9), abs=1e-9)
        assert found[name][0] < values.mean() < found[name][1]
    assert mean_intervals({}, 4, 200, 0.9) == {}


def test_the_identity_resample_gives_the_point_values():
    rng = np.random.default_rng(2)
    clean, adversarial = per_query(rng, 11)
    replicates = bootstrap_replicates(clean, adversarial, np.arange(11)[None], r1_clean=70.0, spread=0.9)
    point = robustness_summary({s: v.mean() for s, v in clean.items()}, {s: v.mean() for s, v in adversarial.items()},
                               70.0, 0.9)
    assert replicates.ers == pytest.approx([point["ERS"]]) and replicates.ars == pytest.approx([point["ARS"]])
    assert {s: v[0] for s, v in replicates.adversarial.items()} == pytest.approx({s: v.mean() for s, v in adversarial.items()})


def test_a_subset_of_attacks_has_no_composite_replicates():
    rng = np.random.default_rng(3)
    clean, adversarial = per_query(rng, 5, scores=("ES:D", "ES:R"))
    replicates = bootstrap_replicates(clean, adversarial, resample_indices(0, 5, 4), r1_clean=70.0, spread=0.9)
    assert replicates.ers is None and replicates.ars is None and set(replicates.adversarial) == {"ES:D", "ES:R"}
    found = intervals(replicates, 0.9)
    assert found["ERS"] is None and found["ARS"] is None
    assert found["ES:D"] == percentile_interval(replicates.adversarial["ES:D"], 0.9)


def slow_quantile(values, p):
    """The p quantile of ``values`` by linear interpolation between order statistics, h = (R - 1) p."""
    ordered = sorted(values)
    h = (len(ordered) - 1) * p
    below = math.floor(h)
    above = min(below + 1, len(ordered) - 1)
    return ordered[below] + (h - below) * (ordered[above] - ordered[below])


def test_percentile_interval_on_hand_worked_values():
    # 11 values 0..10 shuffled, 90 %: quantiles 0.05 and 0.95 at h = 10 * 0.05 = 0.5 and 9.5 -> 0.5 and 9.5
    assert percentile_interval(np.array([3, 7, 0, 10, 5, 1, 9, 2, 8, 4, 6]), 0.9) == pytest.approx((0.5, 9.5))
    # 5 values, 50 %: h = 4 * 0.25 = 1 and 4 * 0.75 = 3 -> the 2nd and 4th smallest
    assert percentile_interval(np.array([5.0, 1.0, 4.0, 2.0, 3.0]), 0.5) == (2.0, 4.0)
    values = np.random.default_rng(4).normal(size=37)
    assert percentile_interval(values, 0.95) == pytest.approx((slow_quantile(values, 0.025), slow_quantile(values, 0.975)))


@pytest.mark.parametrize("confidence", [0.0, 1.0, -0.5, 1.5])
def test_confidence_must_lie_strictly_between_0_and_1(confidence):
    with pytest.raises(ValueError, match="confidence"):
        percentile_interval(np.arange(5.0), confidence)


def test_percentile_interval_refuses_empty_or_non_finite_replicates():
    for bad in (np.array([]), np.array([1.0, np.nan]), np.ones((2, 2))):
        with pytest.raises(ValueError, match="replicates"):
            percentile_interval(bad, 0.95)


def test_the_interval_of_a_mean_covers_the_true_mean_about_as_often_as_it_claims():
    # 400 samples of 60 exponential values (mean 1); the 90 % percentile interval of each sample's mean,
    # from 300 resamples, holds 1 in about 90 % of them (a little less: the percentile interval is short
    # on skewed data of this size). Swapped or off-by-a-level quantiles would cover 0 % or 50-60 %.
    rng = np.random.default_rng(5)
    covered = 0
    for sample in range(400):
        values = rng.exponential(size=60)
        low, high = percentile_interval(resampled_means({"x": values}, resample_indices(sample, 60, 300))["x"], 0.9)
        covered += low <= 1.0 <= high
    assert 0.83 <= covered / 400 <= 0.95


@settings(max_examples=50, deadline=None)
@given(arrays(np.float64, st.integers(1, 40), elements=st.floats(-1e6, 1e6)), st.floats(0.01, 0.99))
def test_a_model_compared_with_itself_is_never_called_different(replicates, confidence):
    low, high = paired_difference(replicates, replicates.copy(), confidence)
    assert (low, high) == (0.0, 0.0) and not is_different(low, high)


def test_a_clearly_shifted_pair_is_called_different_and_the_pairing_takes_out_shared_noise():
    rng = np.random.default_rng(6)
    shared = rng.normal(scale=10.0, size=1000)  # how hard each resample's queries are, for both models
    first = 50.0 + shared
    second = 48.0 + shared + rng.normal(scale=0.5, size=1000)
    low, high = paired_difference(first, second, 0.95)
    # the difference is 2 + N(0, 0.5): its 95 % interval is about 2 +- 1, clear of 0
    assert 0.5 < low < 2.0 < high < 3.5 and is_different(low, high)
    assert is_different(*paired_difference(second, first, 0.95))
    # the two intervals alone overlap (each about 10 wide): unpaired they could not be told apart
    assert percentile_interval(second, 0.95)[1] > percentile_interval(first, 0.95)[0]


def test_is_different_needs_an_interval_clear_of_0():
    assert not is_different(0.0, 1.0) and not is_different(-1.0, 0.0) and not is_different(-1.0, 1.0)
    assert is_different(0.1, 1.0) and is_different(-1.0, -0.1)


def test_paired_replicates_must_match():
    with pytest.raises(ValueError, match="one shape"):
        paired_difference(np.zeros(3), np.zeros(4), 0.95)
