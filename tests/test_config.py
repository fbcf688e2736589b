"""params.yaml validation: errors are one line naming the file and the key."""

import pytest
import yaml

from catride_core.config import (
    Params,
    ParamsError,
    load_params,
    parse_override,
    parse_params,
)


def write(tmp_path, data):
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_repository_params_file_is_valid():
    params = load_params("params.yaml")
    assert params.prepare.dataset == "mnist5k"
    assert params.pretrain.epochs >= 1


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"pretrain": {"epochs": -1}}, "params.yaml: pretrain.epochs: must be >= 0, got -1"),
        ({"pretrain": {"epoch": 3}}, "params.yaml: pretrain.epoch: unknown key"),
        ({"bogus": {}}, "params.yaml: bogus: unknown key"),
        ({"pretrain": {"lr": "fast"}}, "params.yaml: pretrain.lr: input should be a valid number"),
        ({"prepare": {"dataset": "imagenet"}}, "params.yaml: prepare.dataset: must be one of"),
        ({"prepare": {"test_fraction": 1.5}}, "params.yaml: prepare.test_fraction: must be < 1.0, got 1.5"),
        ({"prepare": {"dataset": "folder"}}, "params.yaml: prepare: the folder dataset is split class-disjoint"),
        ({"base": {"device": "tpu"}}, "params.yaml: base.device: must be one of 'auto', 'cpu' or 'cuda', got 'tpu'"),
    ],
)
def test_bad_params_name_file_and_key(tmp_path, data, message):
    with pytest.raises(ParamsError) as info:
        load_params(write(tmp_path, data))
    text = str(info.value).replace(str(tmp_path) + "/", "")
    assert text.startswith(message)
    assert "\n" not in text


def test_missing_file_and_bad_yaml(tmp_path):
    with pytest.raises(ParamsError, match="cannot read params file"):
        load_params(tmp_path / "absent.yaml")
    bad = tmp_path / "params.yaml"
    bad.write_text("pretrain: [epochs: 1\n")
    with pytest.raises(ParamsError, match="not valid YAML"):
        load_params(bad)


def test_fractions_are_exact():
    from pydantic import BaseModel

    from catride_core.config import PixelBudget

    class Budget(BaseModel):
        eps: PixelBudget

    assert Budget(eps="77/255").eps == 77 / 255
    assert Budget(eps=0.5).eps == 0.5
    with pytest.raises(ValueError):
        Budget(eps="8/0")


def test_defaults_fill_missing_sections():
    assert parse_params({}) == Params()


@pytest.mark.parametrize("dataset", ["mnist5k", "mnist", "fashion"])
def test_decode_cache_on_an_in_memory_dataset_names_the_key(dataset):
    with pytest.raises(ParamsError, match=rf"^params.yaml: prepare.decode_cache: the {dataset} dataset is held in "
                                          "memory at 28 px and has no image files to decode"):
        parse_params({"prepare": {"dataset": dataset, "decode_cache": True}})
    assert not parse_params({"prepare": {"dataset": dataset}}).prepare.decode_cache


@pytest.mark.parametrize("dataset", ["cub", "cars", "sop", "folder"])
def test_decode_cache_is_for_image_file_datasets(dataset):
    split = "class_disjoint" if dataset == "folder" else "stratified"
    assert parse_params({"prepare": {"dataset": dataset, "split": split, "decode_cache": True}}).prepare.decode_cache


# --- `--set section.key=value` overrides ---------------------------------------------------------

def test_overrides_lay_over_the_file_in_order(tmp_path):
    path = write(tmp_path, {"attack": {"eps": "77/255", "steps": 10}, "models": ["pretrained", "none"],
                            "report": {"example_models": ["none"]}})
    params = load_params(path, ["attack.eps=8/255", "attack.names=[es, ca_plus]", "attack.max_queries=null",
                                "models=[none]", "attack.steps=3", "attack.steps=4"])
    assert params.attack.eps == 8 / 255  # the fraction, exactly, as written in params.yaml
    assert params.attack.names == ["es", "ca_plus"] and params.attack.max_queries is None
    assert params.attack.steps == 4  # a later override wins
    assert params.models == ["none"]
    assert params.attack.step_size == 3 / 255  # keys not overridden keep their value
    assert load_params(path).attack.eps == 77 / 255  # the file itself is not touched


def test_no_file_means_the_defaults():
    assert load_params(None) == Params()
    assert load_params(None, ["report.sweep_queries=7"]).report.sweep_queries == 7


def test_override_values_are_read_as_yaml():
    assert parse_override("finetune.ca_tride.stop_below=1e-4") == {"finetune": {"ca_tride": {"stop_below": "1e-4"}}}
    assert parse_override("attack.random_start=true") == {"attack": {"random_start": True}}
    assert parse_override(" attack.steps = 5") == {"attack": {"steps": 5}}
    assert parse_override("evaluate.recall_at=[1, 2]") == {"evaluate": {"recall_at": [1, 2]}}


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["attack.epz=1"], "--set attack.epz=1: attack.epz: unknown key"),
        (["attack.eps=8/0"], "--set attack.eps=8/0: attack.eps: not a number or fraction"),
        (["attack.steps=-1"], "--set attack.steps=-1: attack.steps: must be >= 0, got -1"),
        (["report.sweep_attacks=[es, fgsm]"], "--set report.sweep_attacks=[es, fgsm]: report.sweep_attacks.1: must be one of"),
        (["attack.eps"], "--set attack.eps: expected section.key=value"),
        (["attack..eps=1"], "--set attack..eps=1: expected section.key=value"),
        (["attack.names=[es"], "--set attack.names=[es: the value is not valid YAML"),
    ],
)
def test_a_bad_override_names_itself_and_the_key(tmp_path, overrides, message):
    with pytest.raises(ParamsError) as info:
        load_params(write(tmp_path, {"attack": {"steps": 2}}), overrides)
    assert str(info.value).startswith(message) and "\n" not in str(info.value)


def test_an_error_in_the_file_still_names_the_file(tmp_path):
    with pytest.raises(ParamsError, match=r"params.yaml: pretrain.epochs: must be >= 0"):
        load_params(write(tmp_path, {"pretrain": {"epochs": -1}}), ["attack.eps=8/255"])
