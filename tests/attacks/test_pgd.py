import pytest
import torch
from torch import nn

from catride_core.attacks.pgd import check_adversarial, check_inputs, pgd
from catride_core.errors import AttackCheckError


class PixelsAsEmbeddings(nn.Module):
    """Embedding = the flattened pixels times a scale of 1, so objectives act on pixels directly."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(1.0))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.scale * images.flatten(1)


def _images(n: int = 4, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, 1, 3, 3, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("eps, step_size, steps", [(0.0, 0.1, 5), (0.1, 0.0, 5), (0.1, 0.1, 0)])
def test_a_zero_budget_changes_nothing(eps, step_size, steps):
    images = _images()
    result = pgd(PixelsAsEmbeddings(), images, lambda e: e.sum(), eps, step_size, steps, random_start=True)
    assert torch.equal(result.images, images)
    assert result.steps_taken == 0
    assert result.loss == pytest.approx(float(images.sum()))


def test_minimises_a_known_objective_up_to_the_ball_and_the_box():
    # minimising the pixel sum moves every pixel down by eps (3 steps of 0.04 > eps = 0.1),
    # except where 0 is reached first
    images = _images(8)
    result = pgd(PixelsAsEmbeddings(), images, lambda e: e.sum(), eps=0.1, step_size=0.04, steps=3)
    assert torch.allclose(result.images, (images - 0.1).clamp_min(0.0))
    assert result.steps_taken == 3


def test_stays_within_eps_and_the_unit_box():
    # pixels start at the box edges and a random linear objective pushes them every way
    images = torch.tensor([0.0, 1.0, 0.02, 0.98, 0.5]).repeat(4, 1).view(4, 1, 1, 5)
    weights = torch.randn(4, 5, generator=torch.Generator().manual_seed(1))
    eps = 0.05
    result = pgd(PixelsAsEmbeddings(), images, lambda e: (weights * e).sum(), eps, step_size=0.03, steps=4)
    assert (result.images - images).abs().max() <= eps + 1e-6
    assert result.images.min() >= 0.0 and result.images.max() <= 1.0
    assert (result.images != images).any()
    check_adversarial(images, result.images, eps)


def test_keeps_the_last_iterate_not_the_best():
    # minimise (x - 0.5)^2 from x = 0.53 with steps of 0.1: x overshoots to 0.43, which is
    # worse than the start; the last iterate is returned anyway. The loss is the one at the
    # iterate before the final step (0.03^2), the last one evaluated.
    images = torch.full((1, 1, 1, 1), 0.53)
    objective = lambda e: ((e - 0.5) ** 2).sum()  # noqa: E731
    one = pgd(PixelsAsEmbeddings(), images, objective, eps=0.2, step_size=0.1, steps=1)
    assert one.images.item() == pytest.approx(0.43)
    assert one.loss == pytest.approx(0.03**2, abs=1e-7)
    two = pgd(PixelsAsEmbeddings(), images, objective, eps=0.2, step_size=0.1, steps=2)
    assert two.images.item() == pytest.approx(0.53)


def test_stop_below_stops_before_the_step():
    # loss = mean pixel: 0.5, 0.4, 0.3, 0.2 -> below 0.25 at the 4th evaluation, after 3 steps
    images = torch.full((2, 1, 2, 2), 0.5)
    result = pgd(PixelsAsEmbeddings(), images, lambda e: e.mean(), eps=1.0, step_size=0.1, steps=10, stop_below=0.25)
    assert result.steps_taken == 3
    assert result.loss == pytest.approx(0.2, abs=1e-6)
    assert torch.allclose(result.images, torch.full_like(images, 0.2))


def test_stop_change_below_stops_once_the_loss_is_flat():
    # loss = [mean - 0.3]_+ : 0.2, 0.1, ~0, 0 -> the change drops below 1e-3 at the 4th evaluation
    images = torch.full((1, 1, 2, 2), 0.5)
    objective = lambda e: (e.mean() - 0.3).clamp_min(0.0)  # noqa: E731
    result = pgd(PixelsAsEmbeddings(), images, objective, eps=1.0, step_size=0.1, steps=10, stop_change_below=1e-3)
    assert result.steps_taken == 3


def test_random_start_is_seeded_and_inside_the_ball():
    images = _images()
    zero = lambda e: 0.0 * e.sum()  # noqa: E731  (zero gradient: the start is the result)
    runs = [
        pgd(PixelsAsEmbeddings(), images, zero, 0.1, 0.01, 1, True, torch.Generator().manual_seed(seed)).images
        for seed in (3, 3, 4)
    ]
    assert torch.equal(runs[0], runs[1])
    assert not torch.equal(runs[0], runs[2])
    assert not torch.equal(runs[0], images)
    check_adversarial(images, runs[0], 0.1)


class WithFrozenNorm(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(9, 4)
        self.norm = nn.BatchNorm1d(4)
        self.dropout = nn.Dropout(0.5)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.norm(self.linear(images.flatten(1))))


@pytest.mark.parametrize("training", [True, False])
def test_restores_each_module_mode_and_leaves_parameters_alone(training):
    model = WithFrozenNorm()
    model.train(training)
    model.norm.eval()  # a BatchNorm frozen inside a training model must stay frozen
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    seen = []

    def objective(embeddings):
        seen.append([m.training for m in model.modules()])
        return embeddings.sum()

    images = _images(6)
    first = pgd(model, images, objective, eps=0.1, step_size=0.05, steps=2)
    second = pgd(model, images, objective, eps=0.1, step_size=0.05, steps=2)
    assert torch.equal(first.images, second.images)  # eval mode: dropout off, deterministic
    assert all(not any(modes) for modes in seen)
    assert model.training is training
    assert model.linear.training is training and model.dropout.training is training
    assert model.norm.training is False
    for name, p in model.named_parameters():
        assert p.grad is None
        assert torch.equal(p, before[name])


def test_restores_the_mode_on_an_exception():
    model = WithFrozenNorm().train()

    def failing(embeddings):
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        pgd(model, _images(), failing, eps=0.1, step_size=0.05, steps=2)
    assert model.training and model.linear.training


def test_check_inputs_fails_on_training_mode_and_non_finite_embeddings():
    model = WithFrozenNorm().eval()
    check_inputs(model, torch.zeros(2, 4))
    with pytest.raises(AttackCheckError, match="eval mode"):
        check_inputs(WithFrozenNorm().train(), torch.zeros(2, 4))
    model.dropout.train()  # one submodule in training mode is enough to fail
    with pytest.raises(AttackCheckError, match="eval mode"):
        check_inputs(model, torch.zeros(2, 4))
    with pytest.raises(AttackCheckError, match="NaN"):
        check_inputs(WithFrozenNorm().eval(), torch.tensor([[0.0, float("nan")]]))


def test_check_adversarial_fails_on_a_broken_threat_model():
    clean = torch.full((2, 1, 2, 2), 0.5)
    check_adversarial(clean, clean + 0.1, eps=0.1)  # exactly eps is allowed
    with pytest.raises(AttackCheckError, match="exceeds eps"):
        check_adversarial(clean, clean + 0.1 + 1e-4, eps=0.1)
    with pytest.raises(AttackCheckError, match="NaN"):
        broken = clean.clone()
        broken[0, 0, 0, 0] = float("nan")
        check_adversarial(clean, broken, eps=0.1)
    with pytest.raises(AttackCheckError, match=r"\[0, 1\]"):
        check_adversarial(torch.ones(1, 1, 1, 1), torch.full((1, 1, 1, 1), 1.05), eps=0.1)


def _host_reads(monkeypatch):
    """Count the loss values read on the host (``float`` / ``item`` of a tensor: a device sync on a GPU)."""
    reads = []
    to_float, item = torch.Tensor.__float__, torch.Tensor.item
    monkeypatch.setattr(torch.Tensor, "__float__", lambda self: reads.append("float") or to_float(self))
    monkeypatch.setattr(torch.Tensor, "item", lambda self: reads.append("item") or item(self))
    return reads


def test_without_a_stop_rule_the_loss_is_read_on_the_host_once_not_at_every_step(monkeypatch):
    images = _images()
    objective = lambda e: ((e - 0.3) ** 2).sum()  # noqa: E731
    expected = pgd(PixelsAsEmbeddings(), images, objective, eps=0.2, step_size=0.01, steps=8)
    reads = _host_reads(monkeypatch)
    result = pgd(PixelsAsEmbeddings(), images, objective, eps=0.2, step_size=0.01, steps=8)
    assert len(reads) == 1  # the loss PGDResult reports, once at the end
    assert torch.equal(result.images, expected.images) and result.loss == expected.loss
    # a stop rule needs the value at every step
    reads.clear()
    pgd(PixelsAsEmbeddings(), images, objective, eps=0.2, step_size=0.01, steps=8, stop_below=-1.0)
    assert len(reads) >= 8
