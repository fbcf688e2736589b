"""Presets hold the published settings, and `catride preset` lays them over params.yaml."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from catride_core.commands.preset import preset
from catride_core.config import load_params, merge_overrides, parse_params
from catride_core.data.sources import SOURCES

REPO = Path(__file__).resolve().parents[1]
PRESETS = sorted((REPO / "presets").glob("*.yaml"))


def test_a_preset_per_published_dataset():
    assert {path.stem for path in PRESETS} == {"cub", "cars", "sop", "mnist", "fashion"}


@pytest.mark.parametrize("path", PRESETS, ids=lambda path: path.stem)
def test_preset_over_the_defaults_is_the_published_setting(path):
    base = yaml.safe_load((REPO / "params.yaml").read_text())
    params = parse_params(merge_overrides(base, yaml.safe_load(path.read_text())), source=str(path))
    assert params.prepare.dataset == path.stem and params.prepare.dataset in SOURCES
    p, f, a = params.pretrain, params.finetune, params.attack
    if path.stem in ("cub", "cars", "sop"):
        # docs/method.md: ResNet-18, 56 pairs, Adam 1e-5 / 4e-4, 75 epochs; train 8/255 step 1/255, 16 steps; rob224
        assert (p.arch, p.pairs_per_batch, p.lr, p.weight_decay, p.epochs) == ("resnet18", 56, 1e-5, 4e-4, 75)
        assert (f.eps, f.step_size, f.steps) == (8 / 255, 1 / 255, 16)
        assert (a.eps, a.step_size, a.steps) == (8 / 255, 3 / 255, 32)
        assert f.ca_tride.inverse_temperature == {"cub": 10.0, "cars": 9.5, "sop": 2.0}[path.stem]
        assert f.hm.ics_weight == (0.05 if path.stem == "sop" else 0.5)
    else:
        # RobRank rob28: c2f2 from its initialisation (no pretraining), 128 pairs, Adam 1e-3 / 1e-7, 8 epochs,
        # training eps 77/255 step 3/255 with 32 inner steps (the CA-TRIDE code's 16 for its own two)
        assert (p.arch, p.epochs, f.pairs_per_batch, f.lr, f.weight_decay, f.epochs) == ("c2f2", 0, 128, 1e-3, 1e-7, 8)
        assert (f.eps, f.step_size, f.steps, f.tride.steps, f.ca_tride.steps) == (77 / 255, 3 / 255, 32, 16, 16)
        assert (a.eps, a.step_size, a.steps) == (77 / 255, 3 / 255, 32)
    assert a.max_queries is None  # published numbers attack every test image


def test_merge_overrides_is_deep():
    base = {"a": {"x": 1, "y": {"p": 1, "q": 2}}, "b": 3}
    assert merge_overrides(base, {"a": {"y": {"q": 5}}, "c": 4}) == {"a": {"x": 1, "y": {"p": 1, "q": 5}}, "b": 3, "c": 4}


def project_copy(tmp_path):
    shutil.copy(REPO / "params.yaml", tmp_path / "params.yaml")
    shutil.copytree(REPO / "presets", tmp_path / "presets")
    return tmp_path / "params.yaml"


def test_preset_command_applies_keeps_comments_and_sets_root(tmp_path):
    params_file = project_copy(tmp_path)
    (tmp_path / "CUB").mkdir()
    result = CliRunner().invoke(preset, ["--params", str(params_file), "cub", "--root", str(tmp_path / "CUB")])
    assert result.exit_code == 0, result.output
    params = load_params(params_file)
    assert params.prepare.dataset == "cub" and params.prepare.root == str(tmp_path / "CUB")
    assert params.finetune.ca_tride.inverse_temperature == 10.0 and params.pretrain.arch == "resnet18"
    assert params.base.seed == 0  # keys the preset does not name keep their value
    assert "# every random choice" in params_file.read_text()


def test_unknown_preset_and_bad_preset_change_nothing(tmp_path):
    params_file = project_copy(tmp_path)
    before = params_file.read_bytes()
    result = CliRunner().invoke(preset, ["--params", str(params_file), "imagenet"])
    assert result.exit_code == 2 and "no such preset" in result.output and "cub" in result.output
    bad = tmp_path / "bad.yaml"
    bad.write_text("pretrain:\n  epochs: -1\n")
    result = CliRunner().invoke(preset, ["--params", str(params_file), str(bad)])
    assert result.exit_code == 2 and "pretrain.epochs: must be >= 0, got -1" in result.output
    assert params_file.read_bytes() == before
