import numpy as np
import pytest
import torch
from torch import nn

from catride_core import distributed
from catride_core.attacks import runner
from catride_core.attacks.base import AttackBudget, Gallery
from catride_core.attacks.runner import build_attack, run_attacks
from catride_core.data.prepared import TensorImageDataset
from catride_core.distributed import World
from catride_core.names import ATTACK_SCORES, ATTACKS, ERS_ATTACKS, SCORES

BUDGET = AttackBudget(eps=0.15, step_size=0.02, steps=10, batch_size=16)


def _run(name, model, images, labels, budget=BUDGET, seed=0, **options):
    return run_attacks([name], model, images, labels, budget, seed, **options)[name]


def test_every_name_builds_its_attack_and_the_scores_follow_the_ers_order():
    assert [build_attack(name, BUDGET).name for name in ATTACKS] == list(ATTACKS)
    assert [build_attack(name, BUDGET).scores for name in ATTACKS] == list(ATTACK_SCORES.values())
    scores = [score for name in ERS_ATTACKS for score in build_attack(name, BUDGET).scores]
    assert scores == list(SCORES) == ["CA+", "CA-", "QA+", "QA-", "TMA", "ES:D", "ES:R", "LTM", "GTM", "GTT"]
    with pytest.raises(ValueError, match="unknown attack 'fgsm'"):
        build_attack("fgsm", BUDGET)


def test_the_budget_sets_w_and_m():
    budget = AttackBudget(0.1, 0.01, 1, candidates_per_query=3, queries_per_candidate=2)
    assert build_attack("ca_minus", budget).queries_per_candidate == 2
    assert build_attack("qa_plus", budget).candidates_per_query == 3


def test_a_registry_out_of_step_with_the_names_fails(monkeypatch):
    runner._check_registry()  # the real one is in step (it ran at import too)
    monkeypatch.delitem(runner._REGISTRY, "gtt")
    with pytest.raises(RuntimeError, match="names.ATTACKS"):
        runner._check_registry()
    monkeypatch.undo()
    # a key that builds another attack
    monkeypatch.setitem(runner._REGISTRY, "ca_plus", runner._REGISTRY["ca_minus"])
    with pytest.raises(RuntimeError, match="names.ATTACKS"):
        runner._check_registry()


@pytest.mark.parametrize("name", ATTACKS)
def test_stays_within_eps_and_the_unit_box(name, angle_embedder, toy_data):
    images, labels = toy_data
    # start at the box edges so the clamp to [0, 1] matters
    images[:4] = 0.0
    images[-4:] = 1.0
    result = _run(name, angle_embedder(), images, labels, save_images=len(images))
    assert result.images.shape == images.shape
    assert (result.images - images).abs().max() <= BUDGET.eps + 1e-6
    assert result.images.min() >= 0.0 and result.images.max() <= 1.0
    assert (result.images != images).any()


@pytest.mark.parametrize("name", ATTACKS)
def test_eps_zero_changes_nothing(name, angle_embedder, toy_data):
    images, labels = toy_data
    budget = AttackBudget(eps=0.0, step_size=0.02, steps=10, batch_size=16)
    result = _run(name, angle_embedder(), images, labels, budget, save_images=len(images))
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
    ("gtm_ref", "GTM:ref", -1),
    ("es_ref", "ES:D:ref", +1),
    ("ltm_ref", "LTM:ref", -1),
]


@pytest.mark.parametrize("name, score, direction", DIRECTIONS)
def test_each_attack_improves_its_objective_and_moves_its_score(name, score, direction, angle_embedder, toy_data):
    images, labels = toy_data
    model = angle_embedder()
    result = _run(name, model, images, labels, save_images=len(images))
    gain = direction * (result.adversarial[score] - result.clean[score])
    # distances and cosines move by less than percentages; the query's own positive holds LTM:ref back (7.5 here)
    assert gain > {"TMA": 0.05, "ES:D": 0.05, "ES:D:ref": 0.05, "LTM:ref": 5.0}.get(score, 10.0)

    # the objective itself is lower at the returned images than at the clean ones
    attack = build_attack(name, BUDGET)
    with torch.no_grad():
        embeddings = model(images)
        gallery = Gallery(embeddings, labels)
        queries = torch.arange(len(images))
        targets = torch.from_numpy(result.per_query["targets"])
        objective = attack.objective(gallery, queries, targets)
        assert objective(model(result.images)) < objective(embeddings)


def _assert_same(one, other):
    assert other.per_query.keys() == one.per_query.keys()
    for key, values in one.per_query.items():
        assert np.array_equal(values, other.per_query[key]), key


@pytest.mark.parametrize("name", ATTACKS)
def test_same_seed_same_targets_and_result_whatever_the_batch_size(name, angle_embedder, toy_data):
    images, labels = toy_data
    runs = [_run(name, angle_embedder(), images, labels, AttackBudget(0.15, 0.02, 10, batch_size=size), seed=5)
            for size in (7, 7, 40)]
    for other in runs[1:]:
        _assert_same(runs[0], other)
        # per-query means: with batches of 7, 7, ..., 5 a mean of batch means would differ
        assert other.adversarial == pytest.approx(runs[0].adversarial, abs=1e-12)


@pytest.mark.parametrize("name", ["ca_plus", "qa_plus", "tma"])
def test_random_targets_depend_on_the_seed_only(name, angle_embedder, toy_data):
    images, labels = toy_data
    budget = AttackBudget(eps=0.0, step_size=0.0, steps=0)

    def targets(model, seed):
        return _run(name, model, images, labels, budget, seed=seed).per_query["targets"]

    same = targets(angle_embedder(), 1)
    assert np.array_equal(same, targets(angle_embedder(scale=2.0), 1))  # another model, same targets
    assert not np.array_equal(same, targets(angle_embedder(), 2))
    assert (same[:, 0] != np.arange(len(images))).all()


def test_several_attacks_equal_separate_runs_and_embed_the_gallery_once(monkeypatch, angle_embedder, toy_data):
    images, labels = toy_data
    budget = AttackBudget(0.15, 0.02, 10, random_start=True, batch_size=16)  # the start draws from the seed too
    embedded = []
    real_embed = distributed.embed

    def counting_embed(model, images, **options):
        embedded.append(len(images))
        return real_embed(model, images, **options)

    separate = {name: _run(name, angle_embedder(), images, labels, budget, seed=3, save_images=5)
                for name in ("qa_plus", "tma")}
    monkeypatch.setattr(distributed, "embed", counting_embed)
    together = run_attacks(["qa_plus", "tma"], angle_embedder(), images, labels, budget, 3, save_images=5)
    assert embedded == [len(images)]  # one gallery for both attacks
    assert list(together) == ["qa_plus", "tma"]
    for name, result in together.items():
        _assert_same(separate[name], result)
        assert result.clean == separate[name].clean and result.adversarial == separate[name].adversarial
        assert torch.equal(result.images, separate[name].images)


def test_repeated_or_unknown_names_fail_before_any_work(angle_embedder, toy_data):
    images, labels = toy_data
    with pytest.raises(ValueError, match="repeated: \\['es'\\]"):
        run_attacks(["es", "tma", "es"], angle_embedder(), images, labels, BUDGET, 0)
    with pytest.raises(ValueError, match="unknown attack"):
        run_attacks(["es", "pgd"], angle_embedder(), images, labels, BUDGET, 0)
    with pytest.raises(ValueError, match="must be"):
        run_attacks(["es"], angle_embedder(), images.flatten(), labels, BUDGET, 0)


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
def test_run_attacks_restores_the_mode_and_leaves_parameters_alone(training):
    torch.manual_seed(0)
    model = TinyConv().train(training)
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    images = torch.rand(24, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    labels = torch.arange(24) // 3
    results = run_attacks(["qa_minus", "es"], model, images, labels, AttackBudget(0.1, 0.02, 3, batch_size=10),
                          seed=0, max_queries=15, save_images=4)
    for result in results.values():
        assert result.n_queries == 15 and len(result.per_query["index"]) == 15
        assert result.images.shape == (4, 1, 8, 8)
    assert len(results["qa_minus"].per_query["QA-/adversarial"]) == 15
    assert model.training is training and model.norm.training is training
    for name, p in model.named_parameters():
        assert p.grad is None
        assert torch.equal(p, before[name])


class RecordingDataset(TensorImageDataset):
    """uint8 images served one item at a time, as the attack stage reads them, recording every index read."""

    def __init__(self, images, labels):
        super().__init__(images, labels)
        self.reads = []

    def __getitem__(self, index):
        self.reads.append(int(index))
        return super().__getitem__(index)


def _uint8_toy(toy_data):
    images, labels = toy_data
    pixels = (images * 255).round().to(torch.uint8).numpy()
    return RecordingDataset(pixels, labels.numpy()), torch.from_numpy(pixels).float().div_(255.0), labels


def test_a_dataset_read_batch_by_batch_gives_exactly_the_stacked_tensors_results(angle_embedder, toy_data):
    dataset, stacked, labels = _uint8_toy(toy_data)
    budget = AttackBudget(0.15, 0.02, 4, random_start=True, batch_size=7)  # 30 queries: batches of 7, 7, 7, 7, 2
    options = {"max_queries": 30, "save_images": 10}
    from_tensor = run_attacks(ATTACKS, angle_embedder(), stacked, labels, budget, 4, **options)
    from_dataset = run_attacks(ATTACKS, angle_embedder(), dataset, labels, budget, 4, **options)
    for name in ATTACKS:
        _assert_same(from_tensor[name], from_dataset[name])
        assert from_dataset[name].clean == from_tensor[name].clean
        assert from_dataset[name].adversarial == from_tensor[name].adversarial
        assert torch.equal(from_dataset[name].images, from_tensor[name].images)
    # the gallery is read once, then each attack reads its 30 queries, in order, as it attacks them
    assert dataset.reads == list(range(40)) + list(range(30)) * len(ATTACKS)


class OneShardOf(World):
    """Process ``rank`` of ``size`` run alone: the whole gallery, its own shard of the queries, nothing gathered."""

    def embed(self, model, images, batch_size, device, num_workers=0):
        return World().embed(model, images, batch_size, device, num_workers)

    def gather(self, rows):
        return rows


@pytest.mark.parametrize("size", [2, 3])
def test_shards_of_whole_batches_concatenate_to_the_one_process_result(size, angle_embedder, toy_data):
    # random starts too: a later shard first draws what the earlier shards' starts drew
    images, labels = toy_data
    budget = AttackBudget(0.15, 0.02, 4, random_start=True, batch_size=6)  # 40 queries: 7 batches, the last of 4
    one = run_attacks(["qa_plus", "es"], angle_embedder(), images, labels, budget, 2, save_images=20)
    shards = [run_attacks(["qa_plus", "es"], angle_embedder(), images, labels, budget, 2, save_images=20,
                          world=OneShardOf(rank, size)) for rank in range(size)]
    for name, result in one.items():
        for key, values in result.per_query.items():
            parts = [shard[name].per_query[key] for shard in shards]
            if key in ("index", "targets"):  # every process holds every query's targets
                assert all(np.array_equal(part, values) for part in parts), key
            else:
                assert np.array_equal(np.concatenate(parts), values), key
        saved = torch.cat([shard[name].images for shard in shards if shard[name].images is not None])
        assert torch.equal(saved, result.images)
