import math

import numpy as np
import pytest
import torch
from torch import nn

from catride_core.attacks.ranking import (
    ATTACK_SCORES,
    ATTACKS,
    SCORE_NAMES,
    AttackBudget,
    CandidateAttack,
    Gallery,
    GreedyTopTranslocation,
    LearningToMisrank,
    QueryAttack,
    build_attack,
    run_attack,
)
from catride_core.attacks.targets import (
    nearest_other_label_targets,
    random_targets,
    sample_distinct,
    top_fraction_targets,
)
from catride_core.distances import paired_distances, pairwise_distances


class AngleEmbedder(nn.Module):
    """One-pixel images p in [0, 1] -> the point at angle pi * p on the unit circle.

    Distances are 2 sin(pi |p - p'| / 2), increasing in |p - p'|, so every ranking
    is the ranking of pixel values by |p - p'|, which can be worked out by hand.
    """

    def __init__(self, scale: float = math.pi) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(scale))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        angle = self.scale * images.flatten(1)[:, 0]
        return torch.stack([angle.cos(), angle.sin()], 1)


def _on_circle(pixels: list[float]) -> torch.Tensor:
    return AngleEmbedder()(torch.tensor(pixels).view(-1, 1, 1, 1)).detach()


def _toy_data(n: int = 40, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """n one-pixel images, jittered so there are no distance ties, in classes of 4 neighbours."""
    jitter = torch.rand(n, generator=torch.Generator().manual_seed(seed))
    pixels = (torch.arange(n) + 0.2 + 0.6 * jitter) / n
    return pixels.view(n, 1, 1, 1), torch.arange(n) // 4


BUDGET = AttackBudget(eps=0.15, step_size=0.02, steps=10, batch_size=16)


def test_names_cover_every_attack_and_score():
    assert set(ATTACKS) == set(ATTACK_SCORES)
    assert sorted(s for scores in ATTACK_SCORES.values() for s in scores) == sorted(SCORE_NAMES.values())
    assert list(SCORE_NAMES.values()) == ["CA+", "CA-", "QA+", "QA-", "TMA", "ES:D", "ES:R", "LTM", "GTM", "GTT"]
    assert all(build_attack(name, BUDGET).name == name for name in ATTACKS)


@pytest.mark.parametrize("name", ATTACKS)
def test_stays_within_eps_and_the_unit_box(name):
    images, labels = _toy_data()
    # start at the box edges so the clamp to [0, 1] matters
    images[:4] = 0.0
    images[-4:] = 1.0
    result = run_attack(name, AngleEmbedder(), images, labels, BUDGET, seed=0, save_images=len(images))
    assert result.images.shape == images.shape
    assert (result.images - images).abs().max() <= BUDGET.eps + 1e-6
    assert result.images.min() >= 0.0 and result.images.max() <= 1.0
    assert (result.images != images).any()


@pytest.mark.parametrize("name", ATTACKS)
def test_eps_zero_changes_nothing(name):
    images, labels = _toy_data()
    budget = AttackBudget(eps=0.0, step_size=0.02, steps=10, batch_size=16)
    result = run_attack(name, AngleEmbedder(), images, labels, budget, seed=0, save_images=len(images))
    assert torch.equal(result.images, images)
    assert result.clean == result.adversarial
    for score in ATTACK_SCORES[name]:
        assert np.array_equal(result.per_query[f"{score}/clean"], result.per_query[f"{score}/adversarial"])


# (attack, score, +1 if the attack raises the score, -1 if it lowers it)
DIRECTIONS = [
    ("ca_plus", "CA+", -1),
    ("ca_minus", "CA-", +1),
    ("qa_plus", "QA+", -1),
    ("qa_minus", "QA-", +1),
    ("tma", "TMA", +1),
    ("es", "ES:D", +1),
    ("es", "ES:R", -1),
    ("ltm", "LTM", -1),
    ("gtm", "GTM", -1),
    ("gtt", "GTT", -1),
]


@pytest.mark.parametrize("name, score, direction", DIRECTIONS)
def test_each_attack_improves_its_objective_and_moves_its_score(name, score, direction):
    images, labels = _toy_data()
    model = AngleEmbedder()
    result = run_attack(name, model, images, labels, BUDGET, seed=0, save_images=len(images))
    gain = direction * (result.adversarial[score] - result.clean[score])
    assert gain > 10.0 if score not in ("TMA", "ES:D") else gain > 0.05

    # the objective itself is lower at the returned images than at the clean ones
    attack = build_attack(name, BUDGET)
    with torch.no_grad():
        embeddings = model(images)
        gallery = Gallery(embeddings, labels)
        queries = torch.arange(len(images))
        targets = torch.from_numpy(result.per_query["targets"])
        objective = attack.objective(gallery, queries, targets)
        assert objective(model(result.images)) < objective(embeddings)


@pytest.mark.parametrize("name", ATTACKS)
def test_same_seed_same_targets_and_result_whatever_the_batch_size(name):
    images, labels = _toy_data()
    runs = [
        run_attack(name, AngleEmbedder(), images, labels, AttackBudget(0.15, 0.02, 10, batch_size=size), seed=5)
        for size in (7, 7, 40)
    ]
    for other in runs[1:]:
        assert other.per_query.keys() == runs[0].per_query.keys()
        for key, values in runs[0].per_query.items():
            assert np.array_equal(values, other.per_query[key]), key
        # per-query means: with batches of 7, 7, ..., 5 a mean of batch means would differ
        assert other.adversarial == pytest.approx(runs[0].adversarial, abs=1e-12)


@pytest.mark.parametrize("name", ["ca_plus", "qa_plus", "tma"])
def test_random_targets_depend_on_the_seed_only(name):
    images, labels = _toy_data()
    budget = AttackBudget(eps=0.0, step_size=0.0, steps=0)

    def targets(model, seed):
        return run_attack(name, model, images, labels, budget, seed=seed).per_query["targets"]

    same = targets(AngleEmbedder(), 1)
    assert np.array_equal(same, targets(AngleEmbedder(scale=2.0), 1))  # another model, same targets
    assert not np.array_equal(same, targets(AngleEmbedder(), 2))
    assert (same[:, 0] != np.arange(len(images))).all()


def test_random_targets_are_distinct_and_never_the_attacked_item():
    queries = torch.arange(6).repeat(50)
    drawn = random_targets(6, queries, 5, torch.Generator().manual_seed(0))
    # 5 distinct items out of the 5 others: exactly every other item, in some order
    expected = torch.stack([torch.tensor([j for j in range(6) if j != i]) for i in queries.tolist()])
    assert torch.equal(drawn.sort(1).values, expected)
    one = random_targets(6, queries, 1, torch.Generator().manual_seed(0))[:, 0]
    assert (one != queries).all()
    assert set(one.tolist()) == set(range(6))
    rows = sample_distinct(2000, 10, 3, torch.Generator().manual_seed(0))
    assert all(len(set(row)) == 3 for row in rows.tolist())
    # uniform: each of 10 values in 30% of the rows, about 600 +- 3 sigma (~62)
    counts = torch.bincount(rows.flatten(), minlength=10)
    assert (counts - 600).abs().max() < 70


def test_minus_targets_come_from_the_top_one_percent():
    # N = 250 -> top-1% = int(2.5) = 2 nearest items, self excluded
    embeddings = torch.nn.functional.normalize(torch.randn(250, 3, generator=torch.Generator().manual_seed(0)), dim=1)
    queries = torch.arange(250)
    targets = top_fraction_targets(embeddings, queries, 1, torch.Generator().manual_seed(0))
    distances = pairwise_distances(embeddings.double(), embeddings.double())
    picked = set()
    for i in range(250):  # slow reference: the two nearest other items
        order = [j for j in distances[i].argsort().tolist() if j != i]
        assert targets[i, 0].item() in order[:2]
        picked.add(order.index(targets[i, 0].item()))
    assert picked == {0, 1}  # a random choice within the pool, not always the nearest


def test_ca_and_qa_pranks_match_hand_computed_values():
    # gallery pixels (slot: pixel) 0: 0.0, 1: 0.1, 2: 0.2, 3: 0.4, 4: 0.7, 5: 1.0 on the half circle;
    # distances grow with |pixel difference|, so ranks can be read off the pixels
    pixels = [0.0, 0.1, 0.2, 0.4, 0.7, 1.0]
    gallery = Gallery(_on_circle(pixels), torch.arange(6))
    qa = QueryAttack(raise_rank=True)
    # QA: query slot 0 (0.0), candidate slot 4 (0.7). The list is slots 1-5 (5 members);
    # 0.1, 0.2 and 0.4 are ahead of 0.7: 3 / 5 = 60 %
    clean = qa.score(gallery, torch.tensor([0]), torch.tensor([[4]]), gallery.embeddings[[0]])
    assert clean["QA+"].item() == pytest.approx(60.0)
    # query moved to 0.5: distances 0.4 (0.1), 0.3 (0.2), 0.1 (0.4), 0.2 (0.7), 0.5 (1.0):
    # only 0.4 is ahead of 0.7: 1 / 5 = 20 %
    moved = qa.score(gallery, torch.tensor([0]), torch.tensor([[4]]), _on_circle([0.5]))
    assert moved["QA+"].item() == pytest.approx(20.0)

    ca = CandidateAttack(raise_rank=True)
    # CA: candidate slot 2 (0.2) in the list of query slot 5 (1.0). The list is slots 0-4, with
    # the candidate in its own place; the others are at distances 1.0 (0.0), 0.9 (0.1),
    # 0.6 (0.4), 0.3 (0.7) and the candidate at 0.8: 2 ahead, 2 / 5 = 40 %
    clean = ca.score(gallery, torch.tensor([2]), torch.tensor([[5]]), gallery.embeddings[[2]])
    assert clean["CA+"].item() == pytest.approx(40.0)
    # the same pair seen as QA gives the same clean prank
    as_qa = qa.score(gallery, torch.tensor([5]), torch.tensor([[2]]), gallery.embeddings[[5]])
    assert as_qa["QA+"].item() == pytest.approx(40.0)
    # candidate moved to 0.5 (distance 0.5): only 0.7 is ahead, 20 %; to 0.85 (0.15): none, 0 %
    moved = ca.score(gallery, torch.tensor([2, 2]), torch.tensor([[5], [5]]), _on_circle([0.5, 0.85]))
    assert moved["CA+"].tolist() == pytest.approx([20.0, 0.0])
    # moved to 0.05 (distance 0.95): only 0.0 is behind it, 3 ahead of the 4 others, 60 %;
    # the candidate's clean copy (0.2) is not in the list and is not counted
    far = ca.score(gallery, torch.tensor([2]), torch.tensor([[5]]), _on_circle([0.05]))
    assert far["CA+"].item() == pytest.approx(60.0)


def test_gtt_retains_the_top_one_within_four_places():
    # query slot 0 (0.0); its clean top-1 is slot 1 (0.1). Moved to 0.5, the distances are
    # 0.4 (0.1), 0.3 (0.2), 0.1 (0.4), 0.2 (0.7), 0.5 (1.0): 3 ahead, kept (100). Moved to
    # 0.65: 0.55 (0.1), 0.45, 0.25, 0.05, 0.35: 4 ahead, lost (0).
    gallery = Gallery(_on_circle([0.0, 0.1, 0.2, 0.4, 0.7, 1.0]), torch.arange(6))
    gtt = GreedyTopTranslocation()
    targets = gtt.select_targets(gallery, torch.tensor([0, 0]), torch.Generator())
    assert targets.tolist() == [[1], [1]]
    retained = gtt.score(gallery, torch.tensor([0, 0]), targets, _on_circle([0.5, 0.65]))["GTT"]
    assert retained.tolist() == [100.0, 0.0]


def test_gtm_targets_the_truly_nearest_other_label_item():
    # slot: pixel (label): 0: 0.0 (0), 1: 0.9 (1), 2: 0.1 (0), 3: 0.3 (1). For query 0 the
    # other-label items are slots 1 and 3; slot 3 is nearer. The masked-subset bug takes the
    # argmin within [slot 1, slot 3], i.e. 1, as a gallery index: slot 1, the farthest.
    embeddings = _on_circle([0.0, 0.9, 0.1, 0.3])
    labels = torch.tensor([0, 1, 0, 1])
    targets = nearest_other_label_targets(embeddings, labels, torch.arange(4))
    assert targets[0, 0].item() == 3
    # slot 1 (0.9) and slot 3 (0.3): of the label-0 items 0.0 and 0.1, 0.1 (slot 2) is nearer;
    # slot 2 (0.1): of the label-1 items 0.9 and 0.3, 0.3 (slot 3) is nearer
    assert targets[:, 0].tolist() == [3, 2, 3, 2]


def test_gtm_run_uses_the_nearest_other_label_target():
    images, labels = _toy_data()
    result = run_attack("gtm", AngleEmbedder(), images, labels, AttackBudget(0.0, 0.0, 0), seed=0)
    pixels = images.flatten()
    for i, target in enumerate(result.per_query["targets"][:, 0]):
        other = (labels != labels[i]).nonzero().flatten()
        assert target == other[(pixels[other] - pixels[i]).abs().argmin()].item()


def test_ltm_never_uses_the_query_as_its_own_positive():
    # query at angle 0 (label 0), its only other positive at 120 degrees, a negative at 150:
    # d(q, p) = 2 sin 60 = 1.7321, d(q, n) = 2 sin 75 = 1.9319 -> [1.9319 - 1.7321]_+ = 0.1998.
    # With the query's own clean copy as a positive (distance 0) it would be 1.9319.
    angles = torch.tensor([0.0, 120.0, 150.0]) * math.pi / 180
    embeddings = torch.stack([angles.cos(), angles.sin()], 1)
    gallery = Gallery(embeddings, torch.tensor([0, 0, 1]))
    objective = LearningToMisrank().objective(gallery, torch.tensor([0]), torch.zeros(1, 0, dtype=torch.long))
    expected = 2 * math.sin(math.radians(75)) - 2 * math.sin(math.radians(60))
    assert objective(embeddings[[0]]).item() == pytest.approx(expected, abs=1e-5)


def test_es_d_is_the_shift_of_the_returned_image():
    images, labels = _toy_data()
    model = AngleEmbedder()
    result = run_attack("es", model, images, labels, BUDGET, seed=0, save_images=len(images))
    with torch.no_grad():
        shift = paired_distances(model(result.images), model(images)).double().numpy()
    assert np.allclose(result.per_query["ES:D/adversarial"], shift, atol=1e-6)
    assert result.adversarial["ES:D"] == pytest.approx(shift.mean(), abs=1e-6)
    assert result.clean["ES:D"] == 0.0


class TinyConv(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3)
        self.norm = nn.BatchNorm2d(4)
        self.head = nn.Linear(4 * 6 * 6, 8)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        features = torch.relu(self.norm(self.conv(images))).flatten(1)
        return torch.nn.functional.normalize(self.head(features), dim=1)


@pytest.mark.parametrize("training", [True, False])
def test_run_attack_restores_the_mode_and_leaves_parameters_alone(training):
    torch.manual_seed(0)
    model = TinyConv().train(training)
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    images = torch.rand(24, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    labels = torch.arange(24) // 3
    result = run_attack("qa_minus", model, images, labels, AttackBudget(0.1, 0.02, 3, batch_size=10), seed=0,
                        max_queries=15, save_images=4)
    assert result.n_queries == 15 and len(result.per_query["QA-/adversarial"]) == 15
    assert result.images.shape == (4, 1, 8, 8)
    assert model.training is training and model.norm.training is training
    for name, p in model.named_parameters():
        assert p.grad is None
        assert torch.equal(p, before[name])
