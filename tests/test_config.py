"""params.yaml validation: errors are one line naming the file and the key."""

import pytest
import yaml

from catride_core.config import Params, ParamsError, load_params, parse_params


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
        ({"pretrain": {"epochs": 0}}, "params.yaml: pretrain.epochs: must be >= 1, got 0"),
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
