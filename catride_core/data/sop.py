"""Stanford Online Products (Oh Song et al. 2016): 120,053 photos of 22,634 products.

Retrieval protocol (docs/method.md section 1): the split of ``Ebay_train.txt`` /
``Ebay_test.txt`` as given (11,318 train and 11,316 test products, no product
on both sides).
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath

import numpy as np

from catride_core.data.files import (
    check_both_sides,
    dataset_checksum,
    fail,
    image_sizes,
    index_classes,
    parse_int,
    read_text,
    require_file,
    require_root,
)
from catride_core.data.source import SourceData

HEADER = ["image_id", "class_id", "super_class_id", "path"]

LAYOUT = """\
<root>/                          e.g. Stanford_Online_Products/
  Ebay_train.txt                 header "image_id class_id super_class_id path", then one
  Ebay_test.txt                  "<image_id> <class_id> <super_class_id> <path>" per line
  bicycle_final/
    111085122871_0.JPG           <path> is relative to <root>
    ...
  cabinet_final/
  ..."""


def _read_split(path: Path) -> tuple[bytes, list[tuple[str, int, int]]]:
    """One Ebay_*.txt file: its bytes and (image path, class id, line number) per image."""
    raw, lines = read_text("sop", path, LAYOUT)
    if not lines or lines[0][1].split() != HEADER:
        number, first = lines[0] if lines else (1, "")
        got = repr(first) if lines else "an empty file"
        raise fail("sop", f"{path}: line {number}", f"expected the header {' '.join(HEADER)!r}, got {got}", LAYOUT)
    items, seen = [], {}
    for number, line in lines[1:]:
        where = f"{path}: line {number}"
        fields = line.split(maxsplit=3)
        if len(fields) != 4:
            raise fail("sop", where, f"expected '<image_id> <class_id> <super_class_id> <path>', got {line!r}", LAYOUT)
        image_id = parse_int("sop", where, "image_id", fields[0], LAYOUT)
        class_id = parse_int("sop", where, "class_id", fields[1], LAYOUT)
        parse_int("sop", where, "super_class_id", fields[2], LAYOUT)
        if image_id in seen:
            raise fail("sop", where, f"image_id {image_id} already on line {seen[image_id]}", LAYOUT)
        if class_id < 1:
            raise fail("sop", where, f"unknown class_id {class_id}; SOP class ids start at 1", LAYOUT)
        seen[image_id] = number
        items.append((fields[3], class_id, number))
    return raw, items


def load_sop(root: str | None) -> SourceData:
    """Read Stanford Online Products from its two split files.

    Returns:
        paths as listed (relative to ``root``), labels 0..C-1 in class-id
        order, ``is_test`` = listed in Ebay_test.txt, class names
        ``<folder>/<class_id>`` (e.g. ``bicycle_final/1``), and the checksum of
        ``files.dataset_checksum`` over Ebay_train.txt, Ebay_test.txt and every
        image's path and size.
    """
    base = require_root("sop", root, LAYOUT)
    train_file = require_file("sop", base, "Ebay_train.txt", LAYOUT)
    test_file = require_file("sop", base, "Ebay_test.txt", LAYOUT)
    train_raw, train_items = _read_split(train_file)
    test_raw, test_items = _read_split(test_file)

    train_lines = {}
    for _, class_id, number in train_items:
        train_lines.setdefault(class_id, number)
    for _, class_id, number in test_items:
        if class_id in train_lines:
            raise fail(
                "sop",
                f"{test_file}: line {number}",
                f"class_id {class_id} is also in Ebay_train.txt (line {train_lines[class_id]}); "
                "the split must be class-disjoint",
                LAYOUT,
            )

    items = train_items + test_items
    paths = [path for path, _, _ in items]
    listed_in = [f"Ebay_train.txt line {number}" for _, _, number in train_items]
    listed_in += [f"Ebay_test.txt line {number}" for _, _, number in test_items]
    sizes = image_sizes("sop", base, paths, listed_in, LAYOUT)
    labels, classes = index_classes([class_id for _, class_id, _ in items])
    is_test = np.zeros(len(items), dtype=bool)
    is_test[len(train_items) :] = True
    check_both_sides("sop", is_test, "Ebay_train.txt / Ebay_test.txt", str(base), LAYOUT)

    folder_of = {class_id: PurePosixPath(path).parent.as_posix() for path, class_id, _ in items}
    return SourceData(
        labels=labels,
        paths=paths,
        is_test=is_test,
        image_size=224,
        channels=3,
        class_names=[f"{folder_of[int(class_id)]}/{class_id}" for class_id in classes],
        checksum=dataset_checksum(
            [("Ebay_train.txt", train_raw), ("Ebay_test.txt", test_raw)], zip(paths, sizes)
        ),
    )
