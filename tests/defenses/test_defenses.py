"""Defense-level properties on a tiny model: one training step, the budget, zero budget, state, phases."""

import copy
import importlib
import math

import pytest
import torch
from torch import nn

from catride_core import defenses, names
from catride_core.attacks.pgd import check_adversarial
from catride_core.config import CATrideParams, FinetuneParams, HMParams, TrideParams
from catride_core.defenses import decoupling_phase
from catride_core.distances import embedding_shift, paired_distances
from catride_core.models import Embedder
from catride_core.models.embedding import embed
from catride_core.names import DEFENSES
from catride_core.retrieval.collapse import collapseness
from catride_core.training import StepContext, benign_step, fit

ADVERSARIAL = [name for name in DEFENSES if name != "none"]
LAMBDA = 10.0  # of the logged collapseness, as evaluate.diagnostic_inverse_temperature


def build_defense(name: str, cfg: FinetuneParams) -> defenses.Defense:
    """The registry's defense, logging collapseness with ``LAMBDA``."""
    return defenses.build_defense(name, cfg, LAMBDA)


def tiny_model(seed: int = 0) -> Embedder:
    torch.manual_seed(seed)
    network = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.Tanh(), nn.Linear(32, 16))
    return Embedder(network, "tiny", 16, image_size=8, channels=1)


def pixel_model() -> Embedder:
    """Embedding = the normalised pixels, so a test places embeddings by choosing images."""
    return Embedder(nn.Flatten(), "pixels", 2, image_size=1, channels=1)


def clustered_batch(pairs: int = 6, classes: int = 3, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """SPC-2 batch of 1x8x8 images: one random prototype per class plus noise.

    Not collapsed (C < 0), yet close enough that some triplets violate the margin (benign loss > 0).
    """
    g = torch.Generator().manual_seed(seed)
    prototypes = 0.5 + 0.1 * (2 * torch.rand(classes, 1, 8, 8, generator=g) - 1)
    labels = (torch.arange(pairs) % classes).repeat_interleave(2)
    noise = 0.05 * (2 * torch.rand(2 * pairs, 1, 8, 8, generator=g) - 1)
    return (prototypes[labels] + noise).clamp(0, 1), labels


def context(step: int = 0, epoch: int = 1, epochs: int = 2, miner: str = "semihard") -> StepContext:
    return StepContext(epoch, epochs, step, torch.Generator().manual_seed(7), 0.2, miner)


def config(**overrides) -> FinetuneParams:
    values = {
        "eps": 0.1, "step_size": 0.02, "steps": 6,
        "tride": TrideParams(ramp="off"), "ca_tride": CATrideParams(ramp="off"),
    } | overrides
    return FinetuneParams(**values)


def triplet_collapseness(model, triplet) -> float:
    """C (lambda = 10) of a triplet's images, embedded in eval mode."""
    a, p, n = (embed(model, x) for x in (triplet.anchors, triplet.positives, triplet.negatives))
    return float(collapseness(paired_distances(a, p), paired_distances(a, n), LAMBDA))


@pytest.mark.parametrize("step", [0, 1])
@pytest.mark.parametrize("name", DEFENSES)
def test_one_training_step_gives_a_finite_loss_and_gradients(name, step):
    model, (images, labels) = tiny_model(), clustered_batch()
    model.train()
    out = build_defense(name, config())(model, images, labels, context(step))
    loss = float(out.loss.detach())
    assert math.isfinite(loss) and loss > 0
    assert all(math.isfinite(value) for value in out.stats.values())
    out.loss.backward()
    assert model.training  # the perturbation ran in eval mode and gave the mode back
    assert all(p.grad is not None for p in model.parameters())
    assert sum(float(p.grad.abs().sum()) for p in model.parameters()) > 0


@pytest.mark.parametrize("step", [0, 1])
@pytest.mark.parametrize("name", ADVERSARIAL)
def test_perturbation_stays_in_the_budget_and_moves_only_its_roles(name, step):
    model, (images, labels) = tiny_model(), clustered_batch()
    defense = build_defense(name, config())
    if name == "hm":
        defense.load_state_dict({"prev_loss": 0.0})  # destination H = 0: every semihard triplet gets harder
    perturbed = defense.perturb(model, images, labels, context(step))
    assert perturbed.steps_taken > 0
    for role in ("anchors", "positives", "negatives"):
        clean, adversarial = perturbed.clean.role(role), perturbed.images.role(role)
        check_adversarial(clean, adversarial, 0.1)
        assert torch.equal(adversarial, clean) != (role in perturbed.roles), role
    assert all(p.grad is None for p in model.parameters())


def test_roles_perturbed_by_each_defense():
    model, (images, labels) = tiny_model(), clustered_batch()
    roles = {
        (name, step): build_defense(name, config()).perturb(model, images, labels, context(step)).roles
        for name in ADVERSARIAL
        for step in (0, 1)
    }
    everything = ("anchors", "positives", "negatives")
    assert roles[("est", 0)] == roles[("hm", 1)] == everything
    assert roles[("act", 1)] == roles[("tride", 0)] == roles[("ca_tride", 0)] == ("positives", "negatives")
    assert roles[("tride", 1)] == roles[("ca_tride", 1)] == ("anchors",)


# defense -> the miner it mines with when ctx.miner is "semihard"
OWN_MINER = {"est": "random", "act": "semihard", "hm": "semihard", "tride": "semihard", "ca_tride": "semihard"}


@pytest.mark.parametrize("step", [0, 1])
@pytest.mark.parametrize("name", ADVERSARIAL)
def test_zero_budget_is_benign_training_on_the_same_triplets(name, step):
    # eps = 0 leaves every image clean; the loss is then none's on the same mined triplets
    # (HM's ICS term is [d(a, a) - d(a, p)]_+ = 0 there)
    model, (images, labels) = tiny_model(), clustered_batch()
    model.train()
    out = build_defense(name, config(eps=0.0))(model, images, labels, context(step))
    benign = benign_step(model, images, labels, context(step, miner=OWN_MINER[name]))
    assert out.stats["pgd_steps"] == 0
    assert float(out.loss.detach()) == pytest.approx(float(benign.loss.detach()), rel=1e-5)
    assert float(benign.loss.detach()) > 0


@pytest.mark.parametrize("name", ["tride", "ca_tride"])
def test_the_epoch_ramp_makes_the_first_epoch_benign(name):
    model, (images, labels) = tiny_model(), clustered_batch()
    defense = build_defense(name, config(tride=TrideParams(ramp="epoch"), ca_tride=CATrideParams(ramp="epoch")))
    first = defense.perturb(model, images, labels, context(0, epoch=0, epochs=2))
    assert first.steps_taken == 0 and torch.equal(first.images.positives, first.clean.positives)
    later = defense.perturb(model, images, labels, context(0, epoch=1, epochs=2))
    assert later.steps_taken > 0 and not torch.equal(later.images.positives, later.clean.positives)


@pytest.mark.parametrize("name", ["tride", "ca_tride"])
def test_ramps_are_functions_of_the_global_step(name):
    # 4 epochs of 5 steps, alpha = 0.02 (config's step_size): every step of every epoch
    ramps = {ramp: build_defense(name, config(tride=TrideParams(ramp=ramp), ca_tride=CATrideParams(ramp=ramp)))
             for ramp in ("progress", "epoch", "off")}
    alpha, epochs, per_epoch = ramps["off"].step_size, 4, 5
    for step in range(epochs * per_epoch):
        epoch = step // per_epoch
        ctx = StepContext(epoch, epochs, step, torch.Generator(), 0.2, "random", total_steps=epochs * per_epoch)
        assert ramps["epoch"].step_size_at(ctx) == alpha * epoch / epochs  # exactly the authors' alpha * t / T
        assert ramps["progress"].step_size_at(ctx) == alpha * step / (epochs * per_epoch)
        assert ramps["off"].step_size_at(ctx) == alpha
        # within 1/T of the authors' ramp, and only the very first step is benign
        assert 0 <= ramps["progress"].step_size_at(ctx) - ramps["epoch"].step_size_at(ctx) < alpha / epochs
    first_epoch = [ramps["progress"].step_size_at(StepContext(0, epochs, s, torch.Generator(), 0.2, "random",
                                                              total_steps=epochs * per_epoch)) for s in range(5)]
    assert first_epoch[0] == 0 and all(size > 0 for size in first_epoch[1:])


def test_cap_takes_no_step_on_a_collapsed_batch():
    # 2-d embeddings (normalised pixels); pair 0 (label 0): a = (1, 0), p = (0, 1); pair 1 (label 1):
    # a = (1, 0.05), p = (0.1, 1). Every positive lies beyond (almost) every negative, so C > 0.
    images = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.05], [0.1, 1.0]]).view(4, 1, 1, 2)
    labels = torch.tensor([0, 0, 1, 1])
    model = pixel_model()
    perturbed = build_defense("ca_tride", config()).perturb(model, images, labels, context(0))
    e = embed(model, images)
    a, p, n = perturbed.indices
    assert collapseness(paired_distances(e[a], e[p]), paired_distances(e[a], e[n]), LAMBDA) > 0
    assert perturbed.steps_taken == 0 and perturbed.loss == 0.0
    assert torch.equal(perturbed.images.positives, perturbed.clean.positives)
    assert torch.equal(perturbed.images.negatives, perturbed.clean.negatives)
    # the same pairs, positives next to their anchors: not collapsed, and CAP moves them
    close = torch.tensor([[1.0, 0.0], [1.0, 0.1], [0.0, 1.0], [0.1, 1.0]]).view(4, 1, 1, 2)
    assert build_defense("ca_tride", config()).perturb(model, close, labels, context(0)).steps_taken > 0


def test_cap_stops_at_the_collapse_boundary_and_tride_does_not():
    model, (images, labels) = tiny_model(), clustered_batch()
    budget = config(eps=0.5, step_size=0.05, steps=60)
    aware = build_defense("ca_tride", budget).perturb(model, images, labels, context(0))
    plain = build_defense("tride", budget).perturb(model, images, labels, context(0))
    before, after = (triplet_collapseness(model, triplet) for triplet in (aware.clean, aware.images))
    assert before < 0 <= after
    assert 0 < aware.steps_taken < 60 and aware.loss < 1e-5
    assert plain.steps_taken == 60


def test_the_phase_is_a_function_of_the_step_index():
    assert [decoupling_phase(step) for step in range(5)] == ["cap", "anp", "cap", "anp", "cap"]
    model, (images, labels) = tiny_model(), clustered_batch()
    running = build_defense("ca_tride", config())
    for step in range(3):
        running(model, images, labels, context(step))
    # the same step twice gives the same phase: no hidden counter advances
    again = [running.perturb(model, images, labels, context(2)).roles for _ in range(2)]
    assert again == [("positives", "negatives")] * 2
    # a new defense object at step 3, which never ran a step, perturbs the anchors as the running one does
    assert build_defense("ca_tride", config()).perturb(model, images, labels, context(3)).roles == ("anchors",)


def test_a_restored_defense_takes_the_same_next_step_as_an_uninterrupted_one():
    # HM carries state (prev_loss) from step to step: a run interrupted after step 2 and resumed
    # from the saved model, optimizer and defense state must take exactly the step 3 of a run
    # that never stopped
    images, labels = clustered_batch()
    cfg = config(eps=0.3, step_size=0.05)
    model = tiny_model()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    uninterrupted = build_defense("hm", cfg)

    def train_step(model, optimizer, defense, step):
        model.train()
        out = defense(model, images, labels, context(step))
        optimizer.zero_grad(set_to_none=True)
        out.loss.backward()
        optimizer.step()
        return out

    for step in range(3):
        train_step(model, optimizer, uninterrupted, step)
    saved_state = copy.deepcopy(uninterrupted.state_dict())
    saved_model, saved_optimizer = copy.deepcopy(model.state_dict()), copy.deepcopy(optimizer.state_dict())
    ran = train_step(model, optimizer, uninterrupted, 3)

    def resumed_step(state):
        restored_model = tiny_model(seed=1)  # other weights, so that only the checkpoint can make them equal
        restored_model.load_state_dict(saved_model)
        restored_optimizer = torch.optim.Adam(restored_model.parameters(), lr=1e-3)
        restored_optimizer.load_state_dict(saved_optimizer)
        restored = build_defense("hm", cfg)
        if state is not None:
            restored.load_state_dict(state)
        return train_step(restored_model, restored_optimizer, restored, 3), restored, restored_model

    resumed, restored, restored_model = resumed_step(saved_state)
    # below the margin, the saved destination -prev_loss is harder than a fresh defense's -0.2
    assert saved_state["prev_loss"] < 0.2
    assert float(resumed.loss.detach()) == float(ran.loss.detach())
    assert resumed.stats == ran.stats
    assert restored.state_dict() == uninterrupted.state_dict()
    assert all(torch.equal(x, y) for x, y in zip(restored_model.parameters(), model.parameters()))
    # without the defense state the resumed step is a different one
    fresh, _, _ = resumed_step(None)
    assert fresh.stats != ran.stats


def test_tride_and_ca_tride_mine_the_same_triplets_and_perturb_the_same_roles():
    model, (images, labels) = tiny_model(), clustered_batch()
    for step in (0, 1):
        plain = build_defense("tride", config()).perturb(model, images, labels, context(step))
        aware = build_defense("ca_tride", config()).perturb(model, images, labels, context(step))
        assert all(torch.equal(x, y) for x, y in zip(plain.indices, aware.indices))
        assert plain.roles == aware.roles


def test_hm_state_round_trip_and_update():
    model, (images, labels) = tiny_model(), clustered_batch()
    model.train()
    hm = build_defense("hm", config(eps=0.3, step_size=0.05))
    assert hm.state_dict() == {"prev_loss": 2.0}
    hm.load_state_dict({"prev_loss": 0.0})
    out = hm(model, images, labels, context(0))
    assert hm.state_dict() == {"prev_loss": out.stats["triplet_loss"]}  # the adversarial triplet loss, not + ICS
    assert out.stats["ics"] > 0
    assert float(out.loss.detach()) == pytest.approx(out.stats["triplet_loss"] + out.stats["ics"])
    resumed = build_defense("hm", config(eps=0.3, step_size=0.05))
    resumed.load_state_dict(hm.state_dict())
    assert resumed.state_dict() == hm.state_dict()
    # the state matters: from the initial 2.0 the destination is -0.2, from 0.0 it is 0
    initial = build_defense("hm", config(eps=0.3, step_size=0.05)).perturb(model, images, labels, context(1))
    hardest = build_defense("hm", config(eps=0.3, step_size=0.05))
    hardest.load_state_dict({"prev_loss": 0.0})
    assert not torch.equal(initial.images.anchors, hardest.perturb(model, images, labels, context(1)).images.anchors)
    with pytest.raises(KeyError):
        resumed.load_state_dict({"prev_loss": 0.1, "step": 3})


@pytest.mark.parametrize("name", ["none", "est", "act", "tride", "ca_tride"])
def test_other_defenses_are_stateless(name):
    defense = build_defense(name, config())
    assert defense.state_dict() == {}
    defense.load_state_dict({})
    with pytest.raises(KeyError):
        defense.load_state_dict({"prev_loss": 2.0})


def test_hm_ics_term_against_its_formula():
    model, (images, labels) = tiny_model(), clustered_batch()
    model.train()
    # a budget large enough that some anchor moves further than its positive lies (ICS > 0)
    cfg = config(eps=0.3, step_size=0.05, hm=HMParams(ics_weight=0.5))
    hm = build_defense("hm", cfg)
    hm.load_state_dict({"prev_loss": 0.0})
    perturbed = hm.perturb(model, images, labels, context(0))
    out = hm.train_loss(model, perturbed, context(0))
    with torch.no_grad():
        clean_a, adv_a, clean_p = map(
            model, (perturbed.clean.anchors, perturbed.images.anchors, perturbed.clean.positives)
        )
    expected = 0.5 * (paired_distances(clean_a, adv_a) - paired_distances(clean_a, clean_p)).clamp_min(0).mean()
    assert float(expected) > 0 and out.stats["ics"] == pytest.approx(float(expected), rel=1e-5)
    plain = build_defense("hm", config(eps=0.3, step_size=0.05, hm=HMParams(ics=False)))
    plain.load_state_dict({"prev_loss": 0.0})
    assert "ics" not in plain.train_loss(model, perturbed, context(0)).stats


@pytest.mark.parametrize(("step", "phase"), [(0, "cap"), (1, "anp"), (2, "cap"), (3, "anp")])
def test_authors_extra_term_on_every_step(step, phase):
    # the authors' trained loss carries the term at every step: their kernel toggles per call and each step calls it
    # twice (a logged-only loss, then the trained one); a margin of 1 keeps the hinge open, so the term is not 0
    model, (images, labels) = tiny_model(), clustered_batch()
    model.train()
    defense = build_defense("ca_tride", config(ca_tride=CATrideParams(ramp="off", extra_term=True, extra_margin=1.0)))
    assert decoupling_phase(step) == phase
    perturbed = defense.perturb(model, images, labels, context(step))
    out = defense.train_loss(model, perturbed, context(step))
    with torch.no_grad():
        a, p, n = (model(x) for x in (perturbed.images.anchors, perturbed.images.positives, perturbed.images.negatives))
    half = len(a) // 2
    d_ap, d_an = paired_distances(a, p).sort().values, paired_distances(a, n).sort().values
    expected = 0.5 * max(0.0, float(d_ap[:half].mean() - d_an[:half].mean()) + 1.0)
    assert expected > 0 and out.stats["extra"] == pytest.approx(expected, abs=1e-6)
    assert float(out.loss.detach()) == pytest.approx(out.stats["triplet_loss"] + expected, abs=1e-6)
    assert "extra" not in build_defense("ca_tride", config()).train_loss(model, perturbed, context(step)).stats


def test_act_and_est_improve_their_objectives():
    model, (images, labels) = tiny_model(), clustered_batch()
    act = build_defense("act", config()).perturb(model, images, labels, context(0))
    before = paired_distances(embed(model, act.clean.positives), embed(model, act.clean.negatives)).mean()
    after = paired_distances(embed(model, act.images.positives), embed(model, act.images.negatives)).mean()
    assert after < before
    est = build_defense("est", config()).perturb(model, images, labels, context(0))
    shift = embedding_shift(embed(model, est.images.anchors), embed(model, est.clean.anchors))
    assert float(shift.min()) > 0.01


def test_unknown_defense_is_refused():
    with pytest.raises(ValueError, match="unknown defense"):
        build_defense("pgd", config())


def test_the_registry_does_not_import_unless_it_builds_exactly_the_named_defenses(monkeypatch):
    assert set(defenses.BUILDERS) == set(DEFENSES)
    try:
        monkeypatch.setattr(names, "DEFENSES", (*DEFENSES, "pgd"))
        with pytest.raises(RuntimeError, match="pgd"):
            importlib.reload(defenses)
        monkeypatch.setattr(names, "DEFENSES", tuple(name for name in DEFENSES if name != "hm"))
        with pytest.raises(RuntimeError, match="names.DEFENSES"):
            importlib.reload(defenses)
    finally:
        monkeypatch.undo()
        importlib.reload(defenses)


def test_a_defense_runs_in_the_training_loop():
    # 4 SPC-2 batches of 6 pairs: CAP, ANP, CAP, ANP by the loop's global step index
    images, labels = clustered_batch(pairs=12, classes=3, seed=1)
    dataset = torch.utils.data.TensorDataset(images, labels)
    model = tiny_model()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    rows, state = fit(
        model, optimizer, dataset, labels, build_defense("ca_tride", config()), lambda m: {},
        epochs=1, pairs_per_batch=6, seed=0, margin=0.2, miner="gradual_semihard", device=torch.device("cpu"),
    )
    assert state == {"epoch": 1, "step": 4}
    assert rows[0]["anp"] == 0.5 and math.isfinite(rows[0]["loss"]) and rows[0]["pgd_steps"] > 0
