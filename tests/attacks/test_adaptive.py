"""The adaptive evaluation: never weaker than RobRank's PGD, and it finds a masked gradient."""

import math

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from catride_core.attacks.adaptive import (
    AdaptiveBudget,
    adaptive_attacks,
    worst_for_the_model,
)
from catride_core.attacks.base import AttackBudget
from catride_core.data.prepared import TensorImageDataset
from catride_core.names import ERS_ATTACKS, SCORES
from catride_core.retrieval.robustness import ROBUST_DIRECTION

BUDGET = AttackBudget(eps=0.15, step_size=0.02, steps=10, batch_size=16)


def quantised(embedder):
    """``embedder`` of the pixel rounded to 1/80: nearly the same rankings, and no gradient anywhere (a masked model)."""

    class Quantised(embedder):
        def forward(self, images):
            return super().forward(torch.round(images * 80) / 80)

    return Quantised()


def toy_set():
    n = 40
    jitter = torch.rand(n, generator=torch.Generator().manual_seed(0))
    pixels = ((torch.arange(n) + 0.2 + 0.6 * jitter) / n).view(n, 1, 1, 1)
    labels = torch.arange(n) // 4
    return TensorImageDataset((pixels * 255).round().to(torch.uint8).numpy(), labels.numpy()), labels


def test_every_score_has_a_direction():
    assert set(SCORES) <= set(ROBUST_DIRECTION)
    values = [np.array([1.0, 5.0]), np.array([3.0, 2.0])]
    assert worst_for_the_model("ES:R", values).tolist() == [1.0, 2.0]  # lower R@1 is worse for the model
    assert worst_for_the_model("ES:D", values).tolist() == [3.0, 5.0]  # a larger shift is worse


@pytest.fixture
def ordinary(angle_embedder):
    images, labels = toy_set()
    return adaptive_attacks(list(ERS_ATTACKS), angle_embedder(), images, labels, BUDGET, AdaptiveBudget(10, 1), 0,
                            24)


@pytest.mark.parametrize("name", ERS_ATTACKS)
def test_the_adaptive_value_is_never_better_for_the_model_than_pgd(ordinary, name):
    result = ordinary[name]
    assert result.runs == ("pgd", "apgd", "restart1")
    for score in result.per_query:
        if score.endswith("/adaptive"):
            score = score.split("/")[0]
            direction = ROBUST_DIRECTION[score]
            adaptive, pgd = result.per_query[f"{score}/adaptive"], result.per_query[f"{score}/pgd"]
            assert (direction * (adaptive - pgd) <= 1e-12).all(), score


@pytest.mark.parametrize("name", ERS_ATTACKS)
def test_on_an_ordinary_model_apgd_alone_reaches_at_least_pgds_objective(name, angle_embedder):
    from catride_core.attacks.apgd import adaptive_pgd
    from catride_core.attacks.base import Gallery
    from catride_core.attacks.pgd import pgd
    from catride_core.attacks.runner import build_attack

    images, labels = toy_set()
    pixels = torch.stack([images[i][0] for i in range(len(images))])
    model = angle_embedder()
    with torch.no_grad():
        gallery = Gallery(model(pixels), labels)
    attack = build_attack(name, BUDGET)
    queries = torch.arange(0, 40, 3)
    targets = attack.select_targets(gallery, queries, torch.Generator().manual_seed(0))
    losses = attack.losses(gallery, queries, targets)
    fixed = pgd(model, pixels[queries], attack.objective(gallery, queries, targets), BUDGET.eps, BUDGET.step_size,
                BUDGET.steps).images
    found = adaptive_pgd(model, pixels[queries], losses, BUDGET.eps, BUDGET.steps)
    with torch.no_grad():
        assert found.losses.mean() <= losses(model(fixed)).mean() + 1e-6


def test_a_masked_gradient_looks_robust_to_pgd_and_falls_to_transfer(angle_embedder):
    images, labels = toy_set()
    masked = adaptive_attacks(["es", "qa_plus"], quantised(angle_embedder), images, labels, BUDGET,
                              AdaptiveBudget(10, 1), 0, 24, surrogate=angle_embedder())
    es = masked["es"]
    # no gradient: PGD and APGD never move the query, so RobRank's protocol reports the clean R@1
    assert es.gradient_norm == 0.0
    assert es.mean("ES:R", "pgd") == es.mean("ES:R", "clean") > 50
    assert es.mean("ES:R", "apgd") == es.mean("ES:R", "clean")
    # the same perturbation crafted on the smooth surrogate breaks it
    assert es.mean("ES:R", "transfer") < 0.5 * es.mean("ES:R", "pgd")
    assert es.mean("ES:R", "adaptive") <= es.mean("ES:R", "transfer")
    assert masked["qa_plus"].mean("QA+", "adaptive") < masked["qa_plus"].mean("QA+", "pgd") - 10


def test_restarts_never_make_the_worst_case_weaker(angle_embedder):
    # (every run is checked within eps and inside [0, 1] by check_adversarial, which raises otherwise)
    images, labels = toy_set()
    fewer = adaptive_attacks(["ltm"], angle_embedder(), images, labels, BUDGET, AdaptiveBudget(10, 0), 0, 24)["ltm"]
    more = adaptive_attacks(["ltm"], angle_embedder(), images, labels, BUDGET, AdaptiveBudget(10, 2), 0, 24)["ltm"]
    # the same first runs, so the worst case over more restarts is never weaker
    assert np.array_equal(fewer.per_query["LTM/apgd"], more.per_query["LTM/apgd"])
    assert (more.per_query["LTM/adaptive"] <= fewer.per_query["LTM/adaptive"]).all()
    assert math.isfinite(more.gradient_norm) and more.gradient_norm > 0


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=st.sampled_from(ERS_ATTACKS), eps=st.floats(0.0, 0.4), steps=st.integers(1, 5),
       restarts=st.integers(0, 2), seed=st.integers(0, 2**31 - 1))
def test_property_never_better_than_pgd_restarts_never_weaker_and_within_the_ball(
        angle_embedder, name, eps, steps, restarts, seed):
    images, labels = toy_set()
    budget = AttackBudget(eps=eps, step_size=0.03, steps=steps, batch_size=8)
    model = angle_embedder()
    fewer = adaptive_attacks([name], model, images, labels, budget, AdaptiveBudget(steps, restarts), seed, 12)[name]
    more = adaptive_attacks([name], model, images, labels, budget, AdaptiveBudget(steps, restarts + 1), seed,
                            12)[name]
    for score in (key.split("/")[0] for key in more.per_query if key.endswith("/adaptive")):
        direction = ROBUST_DIRECTION[score]
        pgd, worst, fewer_worst = (r.per_query[f"{score}/{run}"] for r, run in
                                   ((more, "pgd"), (more, "adaptive"), (fewer, "adaptive")))
        assert (direction * (worst - pgd) <= 1e-12).all(), score  # never better for the model than PGD
        assert (direction * (worst - fewer_worst) <= 1e-12).all(), score  # one more restart never weakens it
    # (every run inside adaptive_attacks is checked within eps and [0, 1] by check_adversarial; the engine alone:)
    from catride_core.attacks.apgd import adaptive_pgd

    pixels = torch.stack([images[i][0] for i in range(8)])
    found = adaptive_pgd(model, pixels, lambda e: e.sum(1), eps, steps, random_start=True,
                         generator=torch.Generator().manual_seed(seed)).images
    assert (found - pixels).abs().max() <= eps + 1e-6 and found.min() >= 0 and found.max() <= 1
