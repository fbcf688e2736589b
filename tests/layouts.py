"""Builders of tiny copies of every dataset's real on-disk layout (used by the source and fault tests)."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import scipy.io
from PIL import Image


def write_jpeg(path: Path, shade: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 6), (shade, 255 - shade, 64)).save(path, "JPEG")


def make_cub(root: Path, classes: tuple[int, ...] = (1, 2, 101, 102), per_class: int = 2, names: bool = True) -> Path:
    image_lines, label_lines = [], []
    image_id = 0
    for class_id in classes:
        for k in range(per_class):
            image_id += 1
            rel = f"{class_id:03d}.Bird_{class_id}/Bird_{class_id}_{k}.jpg"
            write_jpeg(root / "images" / rel, shade=class_id)
            image_lines.append(f"{image_id} {rel}")
            label_lines.append(f"{image_id} {class_id}")
    (root / "images.txt").write_text("\n".join(image_lines) + "\n")
    (root / "image_class_labels.txt").write_text("\n".join(label_lines) + "\n")
    if names:
        (root / "classes.txt").write_text("".join(f"{c} {c:03d}.Bird_{c}\n" for c in range(1, 201)))
    return root


def make_cars(root: Path, classes: tuple[int, ...] = (1, 2, 99, 100), per_class: int = 2) -> Path:
    """cars_annos.mat in the real layout: a 1 x N struct array and a 1 x 196 cell of names."""
    fields = ["relative_im_path", "bbox_x1", "bbox_y1", "bbox_x2", "bbox_y2", "class", "test"]
    items = [(class_id, k) for class_id in classes for k in range(per_class)]
    annotations = np.zeros((1, len(items)), dtype=[(field, "O") for field in fields])
    for n, (class_id, k) in enumerate(items, start=1):
        rel = f"car_ims/{n:06d}.jpg"
        write_jpeg(root / rel, shade=class_id)
        box = [np.array([[v]], dtype=np.uint16) for v in (1, 1, 7, 5)]
        label = np.array([[class_id]], dtype=np.uint8)
        annotations[0, n - 1] = (np.array([rel]), *box, label, np.array([[k % 2]], dtype=np.uint8))
    class_names = np.empty((1, 196), dtype=object)
    class_names[0, :] = [f"Maker Model {c}" for c in range(1, 197)]
    scipy.io.savemat(root / "cars_annos.mat", {"annotations": annotations, "class_names": class_names})
    return root


def make_sop(root: Path, train_classes=(1, 2), test_classes=(3, 4), per_class: int = 2) -> Path:
    for name, classes in (("Ebay_train.txt", train_classes), ("Ebay_test.txt", test_classes)):
        lines = ["image_id class_id super_class_id path"]
        image_id = 0
        for class_id in classes:
            for k in range(per_class):
                image_id += 1
                rel = f"chair_final/{class_id}_{k}.JPG"
                write_jpeg(root / rel, shade=class_id)
                lines.append(f"{image_id} {class_id} 7 {rel}")
        (root / name).write_text("\n".join(lines) + "\n")
    return root


def idx_bytes(array: np.ndarray) -> bytes:
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    return header + array.astype(np.uint8).tobytes()


def make_idx(root: Path, n_train: int = 6, n_test: int = 4, packed: bool = False) -> Path:
    rng = np.random.default_rng(0)
    root.mkdir(parents=True, exist_ok=True)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        arrays = {
            f"{prefix}-images-idx3-ubyte": rng.integers(0, 256, (n, 28, 28)),
            f"{prefix}-labels-idx1-ubyte": np.arange(n) % 10,
        }
        for name, array in arrays.items():
            raw = idx_bytes(array)
            if packed:
                (root / f"{name}.gz").write_bytes(gzip.compress(raw))
            else:
                (root / name).write_bytes(raw)
    return root


def make_folder(root: Path, classes=("zebra", "apple", "mango"), per_class: int = 2) -> Path:
    for shade, name in enumerate(classes):
        for k in range(per_class):
            write_jpeg(root / name / f"img{k}.jpg", shade=40 * shade)
    (root / classes[0] / "notes.txt").write_text("not an image")
    return root
