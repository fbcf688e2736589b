"""The published protocols are expressible: training from the initialisation, each defense's own inner budget and
miner, BatchNorm per model, and GTM's reference target rule as a named compatibility attack."""

from __future__ import annotations

import pandas as pd
import pytest
import torch
import yaml
from click.testing import CliRunner

from catride_core import training
from catride_core.artifacts.checkpoints import read_checkpoint
from catride_core.attacks.targets import (
    nearest_other_label_targets,
    reference_other_label_targets,
)
from catride_core.commands.finetune import finetune
from catride_core.commands.prepare import prepare
from catride_core.commands.pretrain import pretrain
from catride_core.defenses import act, tride
from catride_core.models import build_model, set_batchnorm_training, trains_batchnorm

#: a run on 120 mnist5k digits whose defenses differ from the shared inner budget as the fashion preset's do
#: (there: 32 shared steps, 16 for TRIDE and CA-TRIDE); ramps off and no stop rule, so every step is taken
RUN = {
    "models": ["none", "est", "act", "hm", "tride", "ca_tride"],
    "prepare": {"dataset": "mnist5k", "max_per_class": 12},
    "pretrain": {"epochs": 0, "pairs_per_batch": 8, "embedding_dim": 16},
    "evaluate": {"recall_at": [1], "block_size": 50},
    "finetune": {
        "epochs": 1, "pairs_per_batch": 8, "steps": 5,
        "none": {"miner": "random"}, "act": {"miner": "random", "eps": "30/255"},
        "tride": {"steps": 3, "ramp": "off"}, "ca_tride": {"steps": 3, "ramp": "off", "stop_below": None},
    },
}


def invoke(command, *args):
    result = CliRunner().invoke(command, [str(a) for a in args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result


@pytest.fixture(scope="module")
def start(tmp_path_factory):
    root = tmp_path_factory.mktemp("protocol")
    params = root / "params.yaml"
    params.write_text(yaml.safe_dump(RUN))
    invoke(prepare, "--params", params, "--out", root / "data")
    invoke(pretrain, "--params", params, "--data", root / "data", "--checkpoint", root / "start.pt",
           "--log", root / "pretrain.csv", "--no-progress")
    return root


def test_no_pretraining_starts_from_the_initialisation(start, tmp_path):
    # pretrain.epochs 0: the start is the seeded initialisation itself (a second run gives the same weights), logged
    # as the one row of epoch 0, and a model trained from it with its defense is the published "from scratch" model
    log = pd.read_csv(start / "pretrain.csv")
    assert log["epoch"].tolist() == [0] and log["step"].tolist() == [0]
    invoke(pretrain, "--params", start / "params.yaml", "--data", start / "data", "--checkpoint", tmp_path / "again.pt",
           "--log", tmp_path / "again.csv", "--no-progress")
    first, second = (read_checkpoint(path)["state_dict"] for path in (start / "start.pt", tmp_path / "again.pt"))
    assert first.keys() == second.keys() and all(torch.equal(first[key], second[key]) for key in first)
    assert read_checkpoint(start / "start.pt")["params"]["pretrain"]["epochs"] == 0


@pytest.fixture(scope="module")
def trained(start, tmp_path_factory):
    """Every model of RUN fine-tuned one epoch from the initialisation, with the miner each mining call was given."""
    miners: dict[str, list[str]] = {}
    patch = pytest.MonkeyPatch()
    for module in (training, act, tride):
        original = module.mine_triplets

        def spy(embeddings, labels, miner, *rest, _original=original, _module=module.__name__):
            miners.setdefault(current[0], []).append(miner)
            return _original(embeddings, labels, miner, *rest)

        patch.setattr(module, "mine_triplets", spy)
    current = [""]
    try:
        for model in RUN["models"]:
            current[0] = model
            invoke(finetune, "--params", start / "params.yaml", "--data", start / "data", "--start", start / "start.pt",
                   "--model", model, "--checkpoint", start / f"{model}.pt", "--log", start / f"{model}.csv",
                   "--no-progress")
    finally:
        patch.undo()
    return {model: pd.read_csv(start / f"{model}.csv") for model in RUN["models"]}, miners


def test_each_defense_takes_its_own_inner_budget(trained, start):
    logs, _ = trained
    # the shared 5 steps where a defense sets none; TRIDE and CA-TRIDE their own 3, in the same run
    assert logs["act"]["pgd_steps"].tolist() == [5.0] and logs["est"]["pgd_steps"].tolist() == [5.0]
    assert logs["tride"]["pgd_steps"].tolist() == [3.0] and logs["ca_tride"]["pgd_steps"].tolist() == [3.0]
    assert 0 < logs["hm"]["pgd_steps"].item() <= 5.0  # HM stops once its objective stops changing
    recorded = read_checkpoint(start / "act.pt")["params"]["finetune"]
    assert recorded["act"]["eps"] == pytest.approx(30 / 255) and recorded["eps"] == pytest.approx(77 / 255)


def test_each_defense_mines_with_its_own_miner(trained):
    _, miners = trained
    # none and ACT: RobRank's ptripletN (random); TRIDE and CA-TRIDE: gradual semihard (their default here)
    assert set(miners["none"]) == {"random"} and set(miners["act"]) == {"random"}
    assert set(miners["tride"]) == {"gradual_semihard"} and set(miners["ca_tride"]) == {"gradual_semihard"}


def test_batchnorm_trains_only_where_a_model_says_so():
    torch.manual_seed(0)
    model = build_model("resnet18", 8)
    batchnorms = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    images = torch.rand(2, 3, 64, 64)
    model.train()
    before = batchnorms[0].running_mean.clone()
    model(images)
    assert not trains_batchnorm(model) and not any(m.training for m in batchnorms)
    assert torch.equal(batchnorms[0].running_mean, before)  # frozen: running statistics untouched
    set_batchnorm_training(model, True)
    assert trains_batchnorm(model) and all(m.training for m in batchnorms) and model.training
    model(images)
    assert not torch.equal(batchnorms[0].running_mean, before)
    model.eval()
    assert not any(m.training for m in batchnorms)  # eval mode still evaluates
    set_batchnorm_training(model, False)
    model.train()
    assert not any(m.training for m in batchnorms)


def reference_rule_loop(gallery, labels, queries):
    """RobRank's GTM target, written as its code reads: the argmin among the other-label items (in gallery order),
    whose position in that subset is then used as a gallery index."""
    targets = []
    for q in queries.tolist():
        others = [i for i in range(len(labels)) if labels[i] != labels[q]]
        distances = [float(torch.dist(gallery[q].double(), gallery[i].double())) for i in others]
        targets.append(min(range(len(others)), key=distances.__getitem__))
    return torch.tensor(targets)[:, None]


def test_reference_gtm_target_is_robranks_subset_index():
    g = torch.Generator().manual_seed(0)
    gallery = torch.nn.functional.normalize(torch.randn(40, 6, generator=g), dim=1)
    labels = torch.arange(40) % 4
    queries = torch.tensor([0, 5, 13, 39])
    found = reference_other_label_targets(gallery, labels, queries, block_size=3)
    assert torch.equal(found, reference_rule_loop(gallery, labels, queries))
    # it is not the true nearest other-label item, which the default GTM attacks
    assert not torch.equal(found, nearest_other_label_targets(gallery, labels, queries))


def test_reference_gtm_target_by_hand():
    # 1-d embeddings on a line, labels a a b b: query 0 (label a) has other-label items 2 and 3 at distances
    # 0.5 and 0.9, the nearest is subset position 0, which RobRank's rule reads as gallery item 0: the query itself
    gallery = torch.tensor([[0.0], [0.1], [0.5], [0.9]])
    labels = torch.tensor([0, 0, 1, 1])
    queries = torch.tensor([0])
    assert reference_other_label_targets(gallery, labels, queries).tolist() == [[0]]
    assert nearest_other_label_targets(gallery, labels, queries).tolist() == [[2]]
