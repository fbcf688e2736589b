"""The eps sweep: the attack runner at several budgets on spread queries, and its table for DVC plots."""

import pandas as pd
import pytest
import torch
from torch.utils.data import TensorDataset

from catride_core.attacks.base import AttackBudget
from catride_core.attacks.queries import spread_first
from catride_core.attacks.runner import run_attacks
from catride_core.attacks.sweep import eps_sweep, wide
from catride_core.models import build_model


def test_spread_first_by_hand():
    # linspace(0, 8, 3) = 0, 4, 8 come first; the others follow in order
    assert spread_first(9, 3).tolist() == [0, 4, 8, 1, 2, 3, 5, 6, 7]
    assert spread_first(5, 5).tolist() == [0, 1, 2, 3, 4]
    assert spread_first(4, 1).tolist() == [0, 1, 2, 3]
    assert spread_first(4, 0).tolist() == [0, 1, 2, 3]
    with pytest.raises(ValueError):
        spread_first(3, 4)


@pytest.mark.parametrize(("n", "q"), [(10, 3), (101, 7), (60, 59), (2, 2)])
def test_spread_first_is_a_permutation_starting_with_q_distinct_items(n, q):
    order = spread_first(n, q)
    assert sorted(order.tolist()) == list(range(n))
    first = order[:q]
    assert first[0] == 0 and first[-1] == n - 1 and (first.diff() > 0).all()


def toy_split():
    """20 random 28 px images of 4 classes in class order (as mnist5k's test split is) and a random c2f2."""
    generator = torch.Generator().manual_seed(0)
    images = torch.rand(20, 1, 28, 28, generator=generator)
    labels = torch.arange(4).repeat_interleave(5)
    torch.manual_seed(0)
    return TensorDataset(images, labels), images, labels, build_model("c2f2", 8).eval()


def test_each_point_is_the_runner_at_that_eps_on_the_spread_queries():
    dataset, images, labels, model = toy_split()
    budget = AttackBudget(eps=0.3, step_size=0.01, steps=4, batch_size=3)
    points = eps_sweep(["es", "ca_plus"], model, dataset, labels, budget, [0.0, 0.05], seed=1, n_queries=4)
    assert list(points.columns) == ["eps", "attack", "score", "clean", "adversarial", "n_queries"]
    assert len(points) == 2 * 3 and set(points["n_queries"]) == {4}
    order = spread_first(20, 4)  # slots 0, 6, 13, 19: all four classes, not the first four items of class 0
    assert labels[order[:4]].tolist() == [0, 1, 2, 3]
    reference = run_attacks(["es", "ca_plus"], model, images[order], labels[order],
                            AttackBudget(eps=0.05, step_size=0.01, steps=4, batch_size=3), 1, max_queries=4)
    at = points[points["eps"] == 0.05].set_index("score")
    for result in reference.values():
        for score, value in result.adversarial.items():
            assert at.loc[score, "adversarial"] == pytest.approx(value)
            assert at.loc[score, "clean"] == pytest.approx(result.clean[score])
    at_zero = points[points["eps"] == 0.0]
    # eps = 0 moves nothing: equal ranks, and a shift at float32 rounding (a batch embedded twice)
    assert (at_zero["adversarial"] - at_zero["clean"]).abs().max() < 1e-6
    # a larger budget pushes ES further
    shifts = points[points["score"] == "ES:D"].set_index("eps")["adversarial"]
    assert shifts[0.05] > shifts[0.0]


def test_wide_has_one_row_per_eps_and_one_column_per_score():
    points = pd.DataFrame({
        "eps": [0.0, 0.0, 0.1, 0.1], "attack": ["es", "ca_plus"] * 2, "score": ["ES:R", "CA+"] * 2,
        "clean": [80.0, 50.0, 80.0, 50.0], "adversarial": [80.0, 50.0, 20.0, 5.0], "n_queries": [3] * 4,
    })
    table = wide(points)
    assert list(table.columns) == ["eps", "n_queries", "ES:R", "ES:R/clean", "CA+", "CA+/clean"]
    assert table.to_dict("list") == {"eps": [0.0, 0.1], "n_queries": [3, 3], "ES:R": [80.0, 20.0],
                                     "ES:R/clean": [80.0, 80.0], "CA+": [50.0, 5.0], "CA+/clean": [50.0, 50.0]}
