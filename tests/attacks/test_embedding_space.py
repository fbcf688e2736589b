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
