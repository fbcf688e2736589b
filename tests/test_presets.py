"""Presets hold the published settings, and `catride preset` lays them over params.yaml."""

from __future__ import annotations

import csv
import re
import shutil
from fractions import Fraction
from functools import reduce
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from catride_core.commands.preset import preset
from catride_core.config import load_params, merge_overrides, parse_params
from catride_core.data.sources import SOURCES

REPO = Path(__file__).resolve().parents[1]
PRESETS = sorted((REPO / "presets").glob("*.yaml"))
#: the order of the presets' columns in presets/protocols.csv and docs/method.md
PRESET_ORDER = ["fashion", "mnist", "cub", "cars", "sop"]


def test_a_preset_per_published_dataset():
    assert {path.stem for path in PRESETS} == {"cub", "cars", "sop", "mnist", "fashion"}


#: every published setting, its value per preset and its source (what docs/method.md section 7.1 shows)
PROTOCOLS = list(csv.DictReader((REPO / "presets" / "protocols.csv").open()))


def published_value(text: str):
    """A cell of presets/protocols.csv as params.yaml would read it (``77/255`` a budget, ``null`` None)."""
    value = yaml.safe_load(text)
    if isinstance(value, str) and re.fullmatch(r"\d+/\d+", value):
        return float(Fraction(value))
    return value


@pytest.mark.parametrize("path", PRESETS, ids=lambda path: path.stem)
def test_preset_over_the_defaults_is_the_published_setting(path):
    # the resolved params of `catride preset <name>` over params.yaml hold every published setting of the data file
    base = yaml.safe_load((REPO / "params.yaml").read_text())
    params = parse_params(merge_overrides(base, yaml.safe_load(path.read_text())), source=str(path))
    assert params.prepare.dataset == path.stem and params.prepare.dataset in SOURCES
    resolved = params.model_dump(mode="json")
    for row in PROTOCOLS:
        value = reduce(lambda section, key: section[key], row["setting"].split("."), resolved)
        assert value == pytest.approx(published_value(row[path.stem])), (row["setting"], row["source"])
    assert "pretrained" not in params.models  # with no pretraining it would be the untrained initialisation


def test_every_published_setting_has_a_source_and_a_value_per_preset():
    assert {key for key in PROTOCOLS[0] if key not in ("setting", "source")} == {path.stem for path in PRESETS}
    assert all(row["source"].strip() and all(row[path.stem].strip() for path in PRESETS) for row in PROTOCOLS)
    assert len({row["setting"] for row in PROTOCOLS}) == len(PROTOCOLS)


def test_method_shows_the_published_settings_as_the_data_file_holds_them():
    method = (REPO / "docs" / "method.md").read_text()
    for row in PROTOCOLS:
        cells = [f"`{row['setting']}`", *(row[path.stem] for path in sorted(PRESETS, key=lambda path: PRESET_ORDER.index(path.stem))), row["source"]]
        assert "| " + " | ".join(cells) + " |" in method, row["setting"]


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
    assert "  checkpoint_every: null  # training saves" in params_file.read_text()  # null stays written as null


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
