"""The report's figures from small saved results: what each one draws, in each model's one colour."""

import pytest
from matplotlib.colors import to_hex
from matplotlib.container import BarContainer
from saved_results import benign_metrics, robustness_metrics, training_log

from catride_core import names
from catride_core.report.content import robustness_table
from catride_core.report.figures import (
    MODEL_COLOURS,
    PERCENT_SCORES,
    attacks_figure,
    pretrain_figure,
    scores_figure,
    tradeoff_figure,
    training_figure,
)

MODELS = ["tride", "pretrained", "ca_tride"]  # not in names.MODELS order: colours must not follow the row order


@pytest.fixture
def table():
    return robustness_table(MODELS, {m: benign_metrics(m) for m in MODELS}, {m: robustness_metrics(m) for m in MODELS})


def bars(axis):
    return {c.get_label(): c for c in axis.containers if isinstance(c, BarContainer)}


def bar_colours(axis):
    return {model: to_hex(c.patches[0].get_facecolor()) for model, c in bars(axis).items()}


def test_palette_is_fixed_by_the_names_order_and_distinct():
    assert list(MODEL_COLOURS) == list(names.MODELS)
    assert len(set(MODEL_COLOURS.values())) == len(names.MODELS)


def test_scores_figure_has_a_bar_per_model_and_score_in_the_model_colour(table):
    axis = scores_figure(table).axes[0]
    assert [t.get_text() for t in axis.get_xticklabels()] == ["ERS", "ARS"]
    assert len(axis.patches) == 2 * len(MODELS) and axis.get_ylabel() == "score (%)" and axis.get_title()
    assert bar_colours(axis) == {m: MODEL_COLOURS[m] for m in MODELS}
    # the ERS bar of ca_tride is 30 high and its error bar spans the interval [28.5, 31.5]
    ca_tride = bars(axis)["ca_tride"]
    assert ca_tride.patches[0].get_height() == 30.0
    segments = ca_tride.errorbar.lines[2][0].get_segments()
    assert segments[0][:, 1].tolist() == pytest.approx([28.5, 31.5])


def test_attacks_figure_groups_every_score_and_gives_tma_and_es_d_their_own_axes(table):
    figure = attacks_figure(table)
    percent, tma, es_d = figure.axes
    assert [t.get_text() for t in percent.get_xticklabels()] == list(PERCENT_SCORES) and len(PERCENT_SCORES) == 8
    assert len(percent.patches) == 8 * len(MODELS) and percent.get_ylabel() == "adversarial value (%)"
    assert tma.get_ylabel() == "TMA (cosine similarity)" and es_d.get_ylabel() == "ES:D (embedding distance)"
    assert bar_colours(percent) == {m: MODEL_COLOURS[m] for m in MODELS}


def test_tradeoff_figure_has_one_labelled_point_per_model(table):
    figure = tradeoff_figure(table)
    for axis, score in zip(figure.axes, ("ERS", "ARS")):
        assert axis.get_xlabel() == "clean R@1 (%)" and axis.get_ylabel() == f"{score} (%)"
        assert sorted(t.get_text() for t in axis.texts) == sorted(MODELS)
        points = {c.get_label(): c.lines[0] for c in axis.containers}  # an errorbar per model: its marker first
        assert to_hex(points["ca_tride"].get_color()) == MODEL_COLOURS["ca_tride"]
        assert points["ca_tride"].get_xydata().tolist() == [[93.0, 30.0 if score == "ERS" else 28.0]]


def test_training_figure_draws_every_logged_column_per_model():
    logs = {m: training_log(m) for m in ("pretrained", "ca_tride")}
    figure = training_figure(logs)
    titled = {axis.get_ylabel(): axis for axis in figure.axes if axis.get_ylabel()}
    assert set(titled) == {"training loss (triplet, margin units)", "clean R@1 (%)", "collapseness C of the test set",
                           "inner-PGD steps per batch", "inner-PGD objective (mean per batch)"}
    r1 = titled["clean R@1 (%)"]
    assert {line.get_label(): line.get_ydata().tolist() for line in r1.lines} == {"pretrained": [85.0],
                                                                                  "ca_tride": [86.0, 87.0]}
    assert [line.get_label() for line in titled["inner-PGD steps per batch"].lines] == ["ca_tride"]
    assert all(axis.get_xlabel() == "epoch" for axis in titled.values())


def test_pretrain_figure_uses_the_pretrained_colour():
    figure = pretrain_figure(training_log("ca_tride"))
    lines = [line for axis in figure.axes for line in axis.lines]
    assert len(figure.axes) == 5 and {to_hex(line.get_color()) for line in lines} == {MODEL_COLOURS["pretrained"]}
