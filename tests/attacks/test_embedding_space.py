import numpy as np
import pytest
import torch

from catride_core.attacks.base import AttackBudget
from catride_core.attacks.runner import run_attacks
from catride_core.distances import paired_distances


def test_es_d_is_the_shift_of_the_returned_image(angle_embedder, toy_data):
    images, labels = toy_data
    model = angle_embedder()
    budget = AttackBudget(eps=0.15, step_size=0.02, steps=10, batch_size=16)
    result = run_attacks(["es"], model, images, labels, budget, seed=0, save_images=len(images))["es"]
    with torch.no_grad():
        shift = paired_distances(model(result.images), model(images)).double().numpy()
    assert np.allclose(result.per_query["ES:D/adversarial"], shift, atol=1e-6)
    assert result.adversarial["ES:D"] == pytest.approx(shift.mean(), abs=1e-6)
    assert result.clean["ES:D"] == 0.0


@pytest.mark.parametrize("random_start", [False, True])
def test_es_ref_reports_the_shift_one_step_before_the_last(random_start, angle_embedder, toy_data):
    # RobRank's loop records ES:D before its last step: ES:D of the same attack run for steps - 1
    images, labels = toy_data
    model = angle_embedder()
    budget = AttackBudget(eps=0.15, step_size=0.02, steps=5, batch_size=16, random_start=random_start)
    early = AttackBudget(eps=0.15, step_size=0.02, steps=4, batch_size=16, random_start=random_start)  # inside the ball
    reference = run_attacks(["es_ref"], model, images, labels, budget, seed=3)["es_ref"]
    one_step_early = run_attacks(["es"], model, images, labels, early, seed=3)["es"]
    last = run_attacks(["es"], model, images, labels, budget, seed=3)["es"]
    assert np.array_equal(reference.per_query["ES:D:ref/adversarial"], one_step_early.per_query["ES:D/adversarial"])
    assert reference.adversarial["ES:D:ref"] < last.adversarial["ES:D"]  # the last step still moves it
    assert reference.clean == {"ES:D:ref": 0.0}
    # a budget of no steps stays no steps
    none = run_attacks(["es_ref"], model, images, labels, AttackBudget(0.15, 0.02, 0), seed=3)["es_ref"]
    assert none.adversarial == {"ES:D:ref": 0.0}
