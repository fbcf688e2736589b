"""The on-disk sources, each read from a tiny copy of its real layout built in tmp_path."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import scipy.io
from layouts import (
    idx_bytes,
    make_cars,
    make_cub,
    make_folder,
    make_idx,
    make_sop,
)

from catride_core import names
from catride_core.data.sources import choose_split, read_source
from catride_core.errors import DataError


def raises_naming(match: str, *names: str):
    """DataError naming every fragment in ``names`` and showing the expected layout."""
    pattern = "(?s)" + "".join(f"(?=.*{re.escape(name)})" for name in names) + f".*{match}.*expected layout:"
    return pytest.raises(DataError, match=pattern)


def assert_class_disjoint(labels: np.ndarray, is_test: np.ndarray) -> None:
    assert not set(labels[is_test]) & set(labels[~is_test])


# --- registry -------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["mnist", "fashion", "cub", "cars", "sop", "folder"])
def test_unset_or_missing_root_names_the_setting_or_folder(name, tmp_path):
    with raises_naming("not set", "prepare.root"):
        read_source(name, None)
    with raises_naming("does not exist", str(tmp_path / "nowhere")):
        read_source(name, str(tmp_path / "nowhere"))


# --- CUB ------------------------------------------------------------------------------


def test_cub_reads_paths_labels_and_class_split(tmp_path):
    source = read_source("cub", str(make_cub(tmp_path)))
    assert source.paths[0] == "images/001.Bird_1/Bird_1_0.jpg"
    assert all((tmp_path / path).is_file() for path in source.paths)
    np.testing.assert_array_equal(source.labels, [0, 0, 1, 1, 2, 2, 3, 3])
    np.testing.assert_array_equal(source.is_test, [False] * 4 + [True] * 4)
    assert_class_disjoint(source.labels, source.is_test)
    assert source.class_names == ["001.Bird_1", "002.Bird_2", "101.Bird_101", "102.Bird_102"]
    assert (source.image_size, source.channels, source.images) == (224, 3, None)
    assert re.fullmatch("[0-9a-f]{64}", source.checksum)


def test_cub_without_classes_txt_names_classes_by_id(tmp_path):
    source = read_source("cub", str(make_cub(tmp_path, names=False)))
    assert source.class_names == ["1", "2", "101", "102"]


def test_cub_checksum_follows_metadata_and_image_sizes(tmp_path):
    root = make_cub(tmp_path / "a")
    first = read_source("cub", str(root)).checksum
    assert read_source("cub", str(make_cub(tmp_path / "b"))).checksum == first  # same files elsewhere
    with open(root / "images" / "001.Bird_1" / "Bird_1_0.jpg", "ab") as image:
        image.write(b"\0")
    assert read_source("cub", str(root)).checksum != first


@pytest.mark.parametrize(
    ("edit", "file", "fragments"),
    [
        (lambda r: (r / "images.txt").unlink(), "images.txt", ["missing metadata file"]),
        (lambda r: (r / "image_class_labels.txt").unlink(), "image_class_labels.txt", ["missing metadata file"]),
        (lambda r: _append(r / "images.txt", "9"), "images.txt", ["line 9", "expected '<image_id> <path>'"]),
        (lambda r: _replace_line(r / "image_class_labels.txt", 2, "2 two"), "image_class_labels.txt",
         ["line 2", "class_id must be an integer"]),
        (lambda r: _replace_line(r / "image_class_labels.txt", 3, "3 201"), "image_class_labels.txt",
         ["line 3", "unknown class_id 201"]),
        (lambda r: _append(r / "image_class_labels.txt", "99 1"), "image_class_labels.txt",
         ["line 9", "unknown image_id 99"]),
        (lambda r: _replace_line(r / "image_class_labels.txt", 8, ""), "image_class_labels.txt",
         ["no class for image_id 8"]),
        (lambda r: (r / "images/101.Bird_101/Bird_101_1.jpg").unlink(), "images/101.Bird_101/Bird_101_1.jpg",
         ["listed in images.txt line 6", "does not exist"]),
    ],
)
def test_cub_broken_layout_names_the_file(tmp_path, edit, file, fragments):
    root = make_cub(tmp_path)
    edit(root)
    with raises_naming("", str(root / file), *fragments):
        read_source("cub", str(root))


def test_cub_with_train_classes_only_is_an_error(tmp_path):
    with raises_naming("no test image", "image_class_labels.txt", "101-200"):
        read_source("cub", str(make_cub(tmp_path, classes=(1, 2))))


def _append(path: Path, line: str) -> None:
    with open(path, "a") as handle:
        handle.write(line + "\n")


def _replace_line(path: Path, number: int, line: str) -> None:
    lines = path.read_text().splitlines()
    lines[number - 1] = line
    path.write_text("\n".join(lines) + "\n")


# --- Cars196 --------------------------------------------------------------------------


def test_cars_reads_the_real_mat_layout_and_class_split(tmp_path):
    source = read_source("cars", str(make_cars(tmp_path, classes=(2, 1, 99, 196))))
    assert source.paths[:2] == ["car_ims/000001.jpg", "car_ims/000002.jpg"]
    # classes 2, 1, 99, 196 re-indexed in class order: 1 -> 0, 2 -> 1, 99 -> 2, 196 -> 3
    np.testing.assert_array_equal(source.labels, [1, 1, 0, 0, 2, 2, 3, 3])
    np.testing.assert_array_equal(source.is_test, [False] * 4 + [True] * 4)
    assert_class_disjoint(source.labels, source.is_test)
    assert source.class_names == ["Maker Model 1", "Maker Model 2", "Maker Model 99", "Maker Model 196"]
    assert re.fullmatch("[0-9a-f]{64}", source.checksum)


def test_cars_broken_layouts_name_the_file(tmp_path):
    root = make_cars(tmp_path, classes=(1, 99, 197))
    with raises_naming("unknown class 197", str(root / "cars_annos.mat"), "annotation 5"):
        read_source("cars", str(root))
    make_cars(root)
    (root / "car_ims" / "000003.jpg").unlink()
    with raises_naming("does not exist", str(root / "car_ims/000003.jpg"), "cars_annos.mat annotation 3"):
        read_source("cars", str(root))
    (root / "cars_annos.mat").write_bytes(b"not a MATLAB file at all")
    with raises_naming("not a readable MATLAB file", str(root / "cars_annos.mat")):
        read_source("cars", str(root))
    scipy.io.savemat(root / "cars_annos.mat", {"annotations": np.zeros((1, 3)), "class_names": np.zeros((1, 196))})
    with raises_naming("lacks fields", str(root / "cars_annos.mat"), "relative_im_path"):
        read_source("cars", str(root))
    (root / "cars_annos.mat").unlink()
    with raises_naming("missing metadata file", str(root / "cars_annos.mat")):
        read_source("cars", str(root))


# --- Stanford Online Products ---------------------------------------------------------


def test_sop_keeps_the_given_split(tmp_path):
    source = read_source("sop", str(make_sop(tmp_path, train_classes=(5, 1), test_classes=(11319, 20000))))
    np.testing.assert_array_equal(source.labels, [1, 1, 0, 0, 2, 2, 3, 3])
    np.testing.assert_array_equal(source.is_test, [False] * 4 + [True] * 4)
    assert_class_disjoint(source.labels, source.is_test)
    assert source.paths[0] == "chair_final/5_0.JPG"
    assert source.class_names == ["chair_final/1", "chair_final/5", "chair_final/11319", "chair_final/20000"]


@pytest.mark.parametrize(
    ("edit", "file", "fragments"),
    [
        (lambda r: _replace_line(r / "Ebay_train.txt", 1, "id class path"), "Ebay_train.txt",
         ["line 1", "expected the header"]),
        (lambda r: _replace_line(r / "Ebay_test.txt", 3, "2 3 7"), "Ebay_test.txt",
         ["line 3", "expected '<image_id> <class_id>"]),
        (lambda r: _replace_line(r / "Ebay_test.txt", 2, "1 0 7 chair_final/3_0.JPG"), "Ebay_test.txt",
         ["line 2", "unknown class_id 0"]),
        (lambda r: _append(r / "Ebay_test.txt", "5 1 7 chair_final/1_0.JPG"), "Ebay_test.txt",
         ["line 6", "also in Ebay_train.txt (line 2)"]),
        (lambda r: (r / "chair_final/4_1.JPG").unlink(), "chair_final/4_1.JPG",
         ["listed in Ebay_test.txt line 5", "does not exist"]),
        (lambda r: (r / "Ebay_test.txt").unlink(), "Ebay_test.txt", ["missing metadata file"]),
    ],
)
def test_sop_broken_layout_names_the_file(tmp_path, edit, file, fragments):
    root = make_sop(tmp_path)
    edit(root)
    with raises_naming("", str(root / file), *fragments):
        read_source("sop", str(root))


# --- MNIST / Fashion-MNIST IDX files --------------------------------------------------


@pytest.mark.parametrize("name", ["mnist", "fashion"])
def test_idx_sources_read_plain_and_gzipped_files_alike(name, tmp_path):
    plain = read_source(name, str(make_idx(tmp_path / "plain")))
    packed = read_source(name, str(make_idx(tmp_path / "packed", packed=True)))
    assert plain.images.shape == (10, 1, 28, 28) and plain.images.dtype == np.uint8
    np.testing.assert_array_equal(plain.images, packed.images)
    np.testing.assert_array_equal(plain.labels, [0, 1, 2, 3, 4, 5, 0, 1, 2, 3])
    np.testing.assert_array_equal(plain.is_test, [False] * 6 + [True] * 4)
    assert plain.checksum == packed.checksum
    assert (plain.image_size, plain.channels, plain.paths) == (28, 1, None)
    assert len(plain.class_names) == 6


def test_fashion_names_its_classes(tmp_path):
    source = read_source("fashion", str(make_idx(tmp_path)))
    assert source.class_names[:2] == ["T-shirt/top", "Trouser"]


def test_idx_broken_files_are_named(tmp_path):
    root = make_idx(tmp_path)
    (root / "t10k-labels-idx1-ubyte").write_bytes(idx_bytes(np.arange(3)))
    with raises_naming("holds 3 labels for 4 images", str(root / "t10k-labels-idx1-ubyte")):
        read_source("mnist", str(root))
    (root / "t10k-labels-idx1-ubyte").write_bytes(b"\x00\x00\x08\x01\x00\x00\x00\x04\x00\x01")
    with raises_naming("holds 10 bytes, its header", str(root / "t10k-labels-idx1-ubyte")):
        read_source("mnist", str(root))
    (root / "train-images-idx3-ubyte").write_bytes(b"\x1f\x8b\x08\x03 not idx")
    with raises_naming("not an IDX file", str(root / "train-images-idx3-ubyte")):
        read_source("mnist", str(root))
    (root / "train-images-idx3-ubyte").unlink()
    with raises_naming("missing IDX file", str(root / "train-images-idx3-ubyte"), ".gz"):
        read_source("mnist", str(root))
    (root / "train-images-idx3-ubyte.gz").write_bytes(b"broken gzip")
    with raises_naming("not a readable gzip file", str(root / "train-images-idx3-ubyte.gz")):
        read_source("mnist", str(root))


# --- a user's folder tree -------------------------------------------------------------


def test_folder_reads_sorted_class_folders_and_leaves_the_split_to_prepare(tmp_path):
    source = read_source("folder", str(make_folder(tmp_path)))
    assert source.class_names == ["apple", "mango", "zebra"]
    assert source.paths == ["apple/img0.jpg", "apple/img1.jpg", "mango/img0.jpg", "mango/img1.jpg",
                            "zebra/img0.jpg", "zebra/img1.jpg"]
    np.testing.assert_array_equal(source.labels, [0, 0, 1, 1, 2, 2])
    assert source.is_test is None
    is_test = choose_split(source, "class_disjoint", test_fraction=0.34, seed=0)
    assert_class_disjoint(source.labels, is_test)
    assert len(set(source.labels[is_test])) == 1


def test_folder_errors_name_the_folder(tmp_path):
    root = make_folder(tmp_path)
    (root / "empty").mkdir()
    with raises_naming("holds no image file", str(root / "empty")):
        read_source("folder", str(root))
    single = make_folder(tmp_path / "single", classes=("only",))
    with raises_naming("found 1 class folders", str(single)):
        read_source("folder", str(single))


def test_image_file_datasets_are_the_ones_read_from_files(tmp_path):
    # names.IMAGE_FILE_DATASETS decides where params.yaml allows prepare.decode_cache
    layouts = {"mnist": make_idx, "fashion": make_idx, "cub": make_cub, "cars": make_cars, "sop": make_sop,
               "folder": make_folder}
    for name, make in layouts.items():
        source = read_source(name, str(make(tmp_path / name)))
        assert (source.paths is not None) == (name in names.IMAGE_FILE_DATASETS), name
    assert read_source("mnist5k", None).paths is None and "mnist5k" not in names.IMAGE_FILE_DATASETS
