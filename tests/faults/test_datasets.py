"""Point 7: dataset layouts a user may get wrong, and images PIL reads in surprising ways."""

import numpy as np
import pytest
import yaml
from layouts import make_cub, make_folder, make_sop
from PIL import Image
from support import run, write_params
from torch.utils.data import DataLoader

from catride_core.commands.common import user_message
from catride_core.commands.prepare import prepare
from catride_core.commands.preset import preset
from catride_core.data.images import FileImageDataset, to_rgb
from catride_core.data.sources import read_source
from catride_core.errors import DataError


@pytest.mark.parametrize("dataset", ["cub", "sop"])
def test_a_listed_path_that_is_a_folder_is_named_with_its_line(tmp_path, dataset):
    root = (make_cub if dataset == "cub" else make_sop)(tmp_path / dataset)
    listing = root / ("images.txt" if dataset == "cub" else "Ebay_test.txt")
    lines = listing.read_text().splitlines()
    cut = lines[-1].rsplit("/", 1)[0]  # a line truncated to its folder
    listing.write_text("\n".join([*lines[:-1], cut]) + "\n")
    with pytest.raises(DataError, match=r"is not a file \(a truncated line\?\)") as error:
        read_source(dataset, str(root))
    assert f"listed in {listing.name} line {len(lines)}" in str(error.value)


def test_a_relative_root_is_taken_from_the_params_folder_and_stored_absolute(tmp_path, monkeypatch):
    make_folder(tmp_path / "project" / "images", per_class=3)
    params = write_params(tmp_path / "project", {"prepare": {"dataset": "folder", "root": "images", "split": "class_disjoint",
                                                 "test_fraction": 0.34, "max_per_class": None}})
    monkeypatch.chdir(tmp_path)  # not the params folder
    result = run(prepare, "--params", params, "--out", tmp_path / "prepared")
    assert result.exit_code == 0, result.output
    meta = yaml.safe_load((tmp_path / "prepared" / "meta.json").read_text())
    assert meta["root"] == str((tmp_path / "project" / "images").resolve())


def test_preset_stores_an_absolute_root_with_tilde_expanded(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / "CUB").mkdir()
    (tmp_path / "presets").mkdir()
    (tmp_path / "presets" / "mine.yaml").write_text("prepare:\n  dataset: folder\n  split: class_disjoint\n")
    params = tmp_path / "params.yaml"
    params.write_text("prepare:\n  dataset: mnist5k\n")
    result = run(preset, "--params", params, "mine", "--root", "~/CUB")
    assert result.exit_code == 0, result.output
    assert yaml.safe_load(params.read_text())["prepare"]["root"] == str(tmp_path / "CUB")


def test_a_16_bit_png_is_scaled_not_clipped_to_white(tmp_path):
    values = (np.linspace(0, 65535, 64).reshape(8, 8)).astype(np.uint16)
    Image.fromarray(values).save(tmp_path / "deep.png")
    with Image.open(tmp_path / "deep.png") as image:
        assert image.mode.startswith("I")
        rgb = np.asarray(to_rgb(image))
    assert rgb[0, 0, 0] == 0 and rgb[-1, -1, 0] == 255 and 100 < rgb[4, 0, 0] < 160  # a ramp, not all white
    assert (rgb[..., 0] == rgb[..., 2]).all()


def test_exif_orientation_is_applied(tmp_path):
    image = Image.new("RGB", (6, 2), (200, 10, 10))
    exif = image.getexif()
    exif[0x0112] = 6  # "rotate 90 clockwise to display"
    image.save(tmp_path / "turned.jpg", exif=exif)
    with Image.open(tmp_path / "turned.jpg") as loaded:
        assert loaded.size == (6, 2) and to_rgb(loaded).size == (2, 6)


def test_an_error_in_a_dataloader_worker_reads_as_the_same_one_line(tmp_path):
    root = make_folder(tmp_path / "images")
    (root / "apple" / "img0.jpg").write_bytes(b"not a jpeg")
    dataset = FileImageDataset(root, ["apple/img0.jpg"], np.array([0]), image_size=8, train=False)
    with pytest.raises(DataError) as in_main:
        dataset[0]
    with pytest.raises(DataError) as in_worker:
        next(iter(DataLoader(dataset, num_workers=1)))
    assert "Original Traceback" in str(in_worker.value)  # what torch hands over
    assert user_message(in_worker.value) == user_message(in_main.value)
    assert user_message(in_main.value).startswith(f"cannot read image {root / 'apple' / 'img0.jpg'}")
