"""The robustness curves from saved sweeps (the long table and its figure) and the one colour per model."""

import matplotlib
import pandas as pd
import pytest

from catride_core import names
from catride_core.attacks.sweep import wide
from catride_core.report.curves import (
    COLUMNS,
    eps_label,
    score_axis,
    sweep_figure,
    sweep_points,
)
from catride_core.report.palette import model_colours


def sweep_of(robust_r1, prank, eps=(0.0, 8 / 255, 16 / 255)):
    """A model's sweep as the sweep stage writes it, from hand-written values."""
    rows = []
    for e, r1, p in zip(eps, robust_r1, prank):
        rows += [{"eps": e, "attack": "es", "score": "ES:R", "clean": robust_r1[0], "adversarial": r1, "n_queries": 5},
                 {"eps": e, "attack": "ca_plus", "score": "CA+", "clean": prank[0], "adversarial": p, "n_queries": 5}]
    return wide(pd.DataFrame(rows))


def test_sweep_points_is_the_long_table_of_every_model():
    points = sweep_points({"none": sweep_of([80, 20, 0], [50, 10, 1]), "ca_tride": sweep_of([70, 60, 40], [50, 40, 30])})
    assert tuple(points.columns) == COLUMNS and len(points) == 2 * 2 * 3
    row = points[(points["model"] == "ca_tride") & (points["score"] == "CA+") & (points["eps"] == 8 / 255)]
    assert row[["attack", "clean", "adversarial", "n_queries"]].values.tolist() == [["ca_plus", 50.0, 40.0, 5]]
    assert list(dict.fromkeys(points["model"])) == ["none", "ca_tride"]  # the order given


def test_eps_labels_and_axes():
    assert [eps_label(e) for e in (0.0, 8 / 255, 77 / 255, 0.1)] == ["0", "8/255", "77/255", "0.1"]
    assert score_axis("ES:R") == "R@1 of the attacked query (%)"
    assert score_axis("ES:D") == "embedding shift (L2 distance)"
    assert score_axis("GTT") == "GTT (%)"


def test_sweep_figure_one_panel_per_score_one_line_per_model_in_its_colour():
    points = sweep_points({"none": sweep_of([80, 20, 0], [50, 10, 1]), "ca_tride": sweep_of([70, 60, 40], [50, 40, 30])})
    figure = sweep_figure(points, attack_eps=16 / 255)
    axes = figure.axes
    assert [a.get_title().split("\n")[0] for a in axes] == ["ES:R against eps (5 queries)", "CA+ against eps (5 queries)"]
    assert all(a.get_xlabel() == "eps (L-inf budget, pixel units)" for a in axes)
    colours = model_colours(["none", "ca_tride"])
    for axis in axes:
        lines = {line.get_label(): line for line in axis.get_lines() if not line.get_label().startswith("_")}
        assert set(lines) == {"none", "ca_tride"}
        assert all(matplotlib.colors.to_hex(line.get_color()) == colours[m] for m, line in lines.items())
    es_r = {line.get_label(): list(line.get_ydata()) for line in axes[0].get_lines()}
    assert es_r["ca_tride"] == [70, 60, 40]
    assert [t.get_text() for t in axes[1].get_legend().get_texts()] == ["none", "ca_tride"]
    matplotlib.pyplot.close(figure)


def test_a_model_keeps_its_colour_in_any_subset():
    every = model_colours(names.MODELS)
    assert len(set(every.values())) == len(names.MODELS)  # tab10 has a colour for each of the 7
    assert model_colours(["ca_tride", "none"]) == {"ca_tride": every["ca_tride"], "none": every["none"]}
    assert every["pretrained"] == "#1f77b4"  # tab10's first colour: names.MODELS' first model
    with pytest.raises(ValueError, match="unknown model 'vgg'"):
        model_colours(["vgg"])
