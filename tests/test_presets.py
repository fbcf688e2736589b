"""The presets are valid params files holding the published settings, and the docs' command matches."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from catride_core.config import Params, parse_params
from catride_core.data import SOURCES

REPO = Path(__file__).resolve().parents[1]
PRESETS = sorted((REPO / "presets").glob("*.yaml"))


def test_a_preset_per_published_dataset():
    assert {path.stem for path in PRESETS} == {"cub", "cars", "sop", "mnist", "fashion"}


@pytest.mark.parametrize("path", PRESETS, ids=lambda path: path.stem)
def test_preset_is_valid_and_names_its_dataset(path):
    params = parse_params(yaml.safe_load(path.read_text()), source=str(path))
    assert params.prepare.dataset == path.stem and params.prepare.dataset in SOURCES
    if path.stem in ("cub", "cars", "sop"):
        expected = ("resnet18", 512, 56, 1e-5, 4e-4, 75, 0.2)
    else:
        expected = ("c2f2", 512, 128, 1e-3, 1e-7, 8, 0.2)
    p = params.pretrain
    assert (p.arch, p.embedding_dim, p.pairs_per_batch, p.lr, p.weight_decay, p.epochs, p.margin) == expected


def test_docs_command_sets_the_cub_preset():
    # every `-S key=value` of the CUB command in docs/datasets.md equals the preset,
    # except prepare.root (the example points elsewhere on purpose)
    text = (REPO / "docs" / "datasets.md").read_text()
    command = text[text.index("dvc exp run -n cub-paper") :].split("```")[0]
    settings = dict(re.findall(r"-S '?([\w.]+)=([^\s']+)'?", command))
    preset = yaml.safe_load((REPO / "presets" / "cub.yaml").read_text())
    flat = {f"{section}.{key}": value for section, keys in preset.items() for key, value in keys.items()}
    for key, value in settings.items():
        if key != "prepare.root":
            assert yaml.safe_load(value) == flat[key], key
    missing = {key for key in flat if key.split(".")[0] != "base"} - set(settings)
    assert missing <= {"prepare.test_fraction", "prepare.max_per_class", "evaluate.block_size"}


@pytest.mark.parametrize("path", PRESETS, ids=lambda path: path.stem)
def test_preset_lists_every_key_of_its_sections(path):
    preset = yaml.safe_load(path.read_text())
    for section, keys in preset.items():
        assert set(keys) == set(type(getattr(Params(), section)).model_fields), f"{path.name}: {section}"
