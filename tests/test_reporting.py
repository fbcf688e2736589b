"""The report builders, from small saved results: table layout and intervals, paired comparisons, the report's blocks."""

import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from saved_results import ERS, benign_metrics, resamples, robustness_metrics

from catride_core import names
from catride_core.config import Params
from catride_core.report.content import (
    INTERVAL_COLUMNS,
    PairedComparison,
    adjacent_comparisons,
    comparison_line,
    paired_interval,
    report_blocks,
    robustness_table,
    settings_rows,
    tradeoff_table,
)
from catride_core.report.document import Bullets, Image, Table

MODELS = ["pretrained", "ca_tride", "tride"]


@pytest.fixture
def table():
    return robustness_table(MODELS, {m: benign_metrics(m) for m in MODELS}, {m: robustness_metrics(m) for m in MODELS})


def test_table_has_one_row_per_model_in_the_hm_paper_layout_then_the_intervals(table):
    assert list(table["model"]) == MODELS
    intervals = [f"{c}_{b}" for c in (*names.SCORES, "ERS", "ARS") for b in ("low", "high")]
    assert list(table.columns) == ["model", "R@1", "R@2", "mAP", "NMI", *names.SCORES, "ERS", "ARS",
                                   "collapseness", "spread", *intervals]
    assert table.loc[1, "GTT"] == 9.0 and table.loc[1, "ARS"] == 28.0
    assert table.loc[1, "GTT_low"] == 8.5 and table.loc[1, "ERS_high"] == 31.5 and table.loc[1, "ARS_low"] == 26.5
    assert math.isnan(table.loc[2, "ERS_low"]) and math.isnan(table.loc[2, "CA+_high"])  # tride: no interval


def test_tradeoff_table_is_model_r1_ers_ars(table):
    tradeoff = tradeoff_table(table)
    assert list(tradeoff.columns) == ["model", "R@1", "ERS", "ARS"]
    assert tradeoff.loc[1].tolist() == ["ca_tride", 93.0, 30.0, 28.0]


def test_paired_interval_is_the_percentile_interval_of_row_wise_differences():
    # differences [2, 3, 4, 5, 6]; 80 %: the 10th and 90th percentiles, at positions 0.4 and 3.6 of the
    # sorted differences (linear interpolation): 2 + 0.4 = 2.4 and 5 + 0.6 = 5.6
    low, high = paired_interval(np.array([30.0, 32, 34, 36, 38]), np.array([28.0, 29, 30, 31, 32]), 0.8)
    assert (low, high) == pytest.approx((2.4, 5.6))
    # rows pair up: the same values in another order would give other differences
    assert paired_interval(np.array([1.0, 2.0]), np.array([2.0, 1.0]), 0.5) == pytest.approx((-0.5, 0.5))


def test_paired_interval_against_a_slow_loop():
    rng = np.random.default_rng(0)
    first, second = rng.normal(size=101), rng.normal(size=101)
    differences = sorted(a - b for a, b in zip(first, second))
    # 101 values: the 2.5th and 97.5th percentiles sit at positions 2.5 and 97.5 exactly
    expected = ((differences[2] + differences[3]) / 2, (differences[97] + differences[98]) / 2)
    assert paired_interval(first, second, 0.95) == pytest.approx(expected)


def test_paired_interval_needs_the_same_resamples():
    with pytest.raises(Exception, match="same resamples"):
        paired_interval(np.zeros(5), np.zeros(4), 0.95)


@settings(max_examples=50, deadline=None)
@given(st.lists(st.floats(0.0, 100.0), min_size=1, max_size=40), st.floats(0.5, 0.99))
def test_a_model_compared_with_itself_is_never_different(values, confidence):
    low, high = paired_interval(np.array(values), np.array(values), confidence)
    assert low == high == 0.0
    assert not PairedComparison("ERS", "a", "a", 0.0, low, high).different


def test_adjacent_comparisons_follow_the_ranking_and_call_only_an_interval_without_0_different(table):
    boot = {m: resamples(m) for m in MODELS}
    ers = adjacent_comparisons(table, boot, "ERS", 0.8)
    assert [(c.better, c.worse) for c in ers] == [("ca_tride", "tride"), ("tride", "pretrained")]
    # ca_tride - tride per resample: [-1, 0, 1, 2, 3] -> [-0.6, 2.6]; tride - pretrained: [9..13] -> [9.4, 12.6]
    assert (ers[0].low, ers[0].high) == pytest.approx((-0.6, 2.6)) and not ers[0].different
    assert (ers[1].low, ers[1].high) == pytest.approx((9.4, 12.6)) and ers[1].different
    assert ers[0].difference == pytest.approx(ERS["ca_tride"] - ERS["tride"])
    # a model without resamples gets no interval, and is never called different
    missing = adjacent_comparisons(table, {"ca_tride": boot["ca_tride"]}, "ERS", 0.8)
    assert missing[0].low is None and not missing[0].different
    assert "no bootstrap resamples" in comparison_line(missing[0], 0.8)
    assert "[+9.4, +12.6]: different" in comparison_line(ers[1], 0.8)
    assert "not distinguishable" in comparison_line(ers[0], 0.8)


def test_a_model_without_a_score_is_left_out_of_the_ranking(table):
    table.loc[2, "ERS"] = np.nan  # tride attacked with a subset of attacks: no ERS
    assert [(c.better, c.worse) for c in adjacent_comparisons(table, {}, "ERS", 0.95)] == [("ca_tride", "pretrained")]


def test_settings_name_dataset_model_budgets_seed_intervals_and_commit():
    rows = dict(settings_rows(Params(), "abc123", {"resamples": 1000, "confidence": 0.95, "seed": 0, "queries": 250}))
    assert rows["dataset"].startswith("mnist5k (stratified split")
    assert rows["model"] == "c2f2, 512-d embedding; pretrained 8 epochs"
    assert rows["attacks"] == ("eps 77/255 (0.3020), step 3/255 (0.0118), 32 sign-PGD steps, "
                               "on the first 250 test images")
    assert rows["fine-tuning"].startswith("3 epochs; inner PGD eps 77/255") and rows["code"] == "commit abc123"
    assert "1000 resamples of 250 queries, seed 0" in rows["intervals"] and rows["seed"].startswith("base.seed = 0")
    assert "intervals" not in dict(settings_rows(Params(), "abc123", None))


def test_report_blocks_show_intervals_comparisons_figures_examples_and_settings(table):
    comparisons = adjacent_comparisons(table, {m: resamples(m) for m in MODELS}, "ERS", 0.8)
    blocks = report_blocks(table, comparisons, 0.8, [("code", "commit abc")], {"scores": "f/scores.png",
                           "sweep": "s.png"}, ["ex/ca_tride.png"])
    # the robustness table in two parts that fit a page: together they show every score with its interval, once
    parts = [b for b in blocks if isinstance(b, Table) and set(b.header[1:]) <= set(INTERVAL_COLUMNS)]
    assert [b.header[1:3] for b in parts] == [("ERS", "ARS"), ("TMA", "ES:D")]
    assert sorted(c for b in parts for c in b.header[1:]) == sorted(INTERVAL_COLUMNS)
    ca_tride = {k: v for b in parts for k, v in zip(b.header, b.rows[1])}
    assert ca_tride["ERS"] == "30.0 [28.5, 31.5]" and ca_tride["TMA"] == "4.000 [3.500, 4.500]"
    assert dict(zip(parts[0].header, parts[0].rows[2]))["ERS"] == "29.0"  # tride: no interval to show
    lists = [item for b in blocks if isinstance(b, Bullets) for item in b.items]
    assert "by ERS: ca_tride (30.0) > tride (29.0) > pretrained (10.0)" in lists
    assert any(item.startswith("tride over pretrained: ERS +19.0, 80% interval") for item in lists)
    assert [b.path for b in blocks if isinstance(b, Image)] == ["f/scores.png", "s.png", "ex/ca_tride.png"]
    assert blocks[-1] == Table(("setting", "value"), (("code", "commit abc"),))


def test_report_without_bootstrap_or_logs_has_no_comparisons():
    models = ["pretrained"]
    table = robustness_table(models, {"pretrained": benign_metrics("pretrained")},
                             {"pretrained": {"ERS": None, "ARS": None, "adversarial": {"ES:R": 3.0}}})
    assert pd.isna(table.loc[0, "ERS"]) and table.loc[0, "ES:R"] == 3.0
    blocks = report_blocks(table, [], 0.95, [], {})
    lists = [item for b in blocks if isinstance(b, Bullets) for item in b.items]
    assert "by ERS: n/a (attacks missing)" in lists and not any("interval [" in item for item in lists)
    assert not any(isinstance(b, Image) for b in blocks)


def _adaptive_metrics(ers, ers_pgd, ers_adaptive, norm, overestimated=None, unbounded=(0.0, 1.0), monotone=True):
    checks = {"unbounded": {"eps": 1.0, "ceiling": 10.0, "ES:R": unbounded[0], "CA+": unbounded[1],
                            "passed": max(unbounded) <= 10.0},
              "monotone": {"eps": [0.1, 0.2, 1.0], "ES:R": [50.0, 20.0, 0.0], "passed": monotone},
              "never_better_than_pgd": {"passed": True}}
    return {"ERS": ers, "ERS_low": ers - 1, "ERS_high": ers + 1, "ERS:adaptive": ers_adaptive,
            "ERS:adaptive_low": ers_adaptive - 2, "ERS:adaptive_high": ers_adaptive + 2, "ARS:adaptive": 10.0,
            "adaptive": {"queries": 30, "pgd_same_queries": {"ERS": ers_pgd, "ARS": 12.0}, "scores": {},
                         "overestimated": overestimated or {}, "checks": checks,
                         "gradient_norm": {"es": norm, "ltm": 0.1}}}


def test_the_adaptive_section_shows_both_rankings_the_overestimates_and_the_checks():
    from catride_core.report.content import adaptive_blocks
    from catride_core.report.document import to_markdown

    robustness = {
        "none": _adaptive_metrics(5.0, 5.2, 4.0, 0.1),
        "act": _adaptive_metrics(30.0, 31.0, 12.0, 0.1, {"ES:R": {"gap": 30.0, "low": 10.0, "high": 50.0}}),
        "masked": _adaptive_metrics(40.0, 40.5, 8.0, 1e-6, monotone=False, unbounded=(60.0, 1.0)),
    }
    text = to_markdown(adaptive_blocks(["none", "act", "masked"], robustness, "none"), {})
    assert "| act | 30.0 [29.0, 31.0] | 31.0 | 12.0 [10.0, 14.0] | 12.0 | 10.0 |" in text
    assert "ranking by ERS under PGD-32: masked > act > none" in text
    assert "ranking by ERS under the adaptive attack: act > masked > none" in text
    assert "the order of the models changes under adaptive attacks" in text
    assert "act: ES:R +30.0 [+10.0, +50.0]" in text
    assert "masked: unbounded budget (eps 1) leaves ES:R 60.0 and CA+ 1.0 (must be <= 10)" in text
    assert "FAILED: unbounded, monotone; gradient below 0.01 x none's for es (masking?)" in text
    assert "none: unbounded budget" in text and text.count("all checks passed") == 2
    # no adaptive evaluation in the metrics: no section
    assert adaptive_blocks(["none"], {"none": {"ERS": 5.0}}, "none") == []
