"""The report builders, from small saved results: table layout, markdown, figure."""

import math

import pytest

from catride_core import names
from catride_core.reporting import markdown_report, robustness_figure, robustness_table


def results(ers):
    adversarial = {score: float(i) for i, score in enumerate(names.SCORES)}
    return {"R@1": 90.0, "R@2": 95.0, "mAP": 80.0, "NMI": 70.0, "collapseness": -0.1, "spread": 1.2}, {
        "ERS": ers, "ARS": None if ers is None else ers / 2, "adversarial": adversarial}


@pytest.fixture
def table():
    benign, robust = {}, {}
    for model, ers in (("pretrained", 10.0), ("ca_tride", 30.0), ("tride", None)):
        benign[model], robust[model] = results(ers)
    return robustness_table(["pretrained", "ca_tride", "tride"], benign, robust)


def test_table_has_one_row_per_model_in_the_hm_paper_layout(table):
    assert list(table["model"]) == ["pretrained", "ca_tride", "tride"]
    assert list(table.columns) == ["model", "R@1", "R@2", "mAP", "NMI", *names.SCORES, "ERS", "ARS",
                                   "collapseness", "spread"]
    assert table.loc[1, "GTT"] == 9.0 and table.loc[1, "ARS"] == 15.0 and math.isnan(table.loc[2, "ERS"])


def test_markdown_ranks_by_each_score_and_prints_missing_as_na(table):
    text = markdown_report(table, eps=77 / 255, step_size=3 / 255, steps=32, n_queries=250)
    assert "- by ERS: ca_tride (30.0) > pretrained (10.0)" in text
    assert "| tride | 90.0 |" in text and "n/a" in text
    assert "eps 0.3020, step 0.0118, 32 sign-PGD steps, on the first 250 test images" in text
    assert "every test image" in markdown_report(table, 0.1, 0.01, 1, None)
    row = next(line for line in text.splitlines() if line.startswith("| ca_tride"))
    assert "| 4.000 |" in row  # TMA (a cosine) with 3 decimals


def test_figure_has_a_bar_per_model_and_score(table):
    figure = robustness_figure(table)
    axis = figure.axes[0]
    assert [t.get_text() for t in axis.get_xticklabels()] == ["pretrained", "ca_tride", "tride"]
    assert len(axis.patches) == 2 * len(table) and axis.get_ylabel() == "score (%)"
