"""CUB-200-2011 (Wah et al. 2011): 11,788 bird photos of 200 species.

Zero-shot retrieval protocol (docs/method.md section 1): classes 1-100 train,
101-200 test. The dataset's own ``train_test_split.txt`` (a per-image split for
classification) is not used.
"""

from __future__ import annotations

from catride_core.data.files import (
    class_split_source,
    fail,
    parse_int,
    read_text,
    require_file,
    require_root,
    split_id_line,
)
from catride_core.data.source import SourceData

NUM_CLASSES = 200
LAST_TRAIN_CLASS = 100

LAYOUT = """\
<root>/                          e.g. CUB_200_2011/
  images.txt                     "<image_id> <path under images/>" per line
  image_class_labels.txt         "<image_id> <class_id>" per line, class_id 1..200
  classes.txt                    optional: "<class_id> <class_name>" per line
  images/
    001.Black_footed_Albatross/Black_Footed_Albatross_0001_796111.jpg
    ..."""


def load_cub(root: str | None) -> SourceData:
    """Read CUB-200-2011 from its official folder.

    Returns:
        paths ``images/<path>`` relative to ``root``, labels 0..C-1 in class-id
        order, ``is_test`` = class id > 100, class names from ``classes.txt``
        (the class ids where it is absent), and the checksum of
        ``files.dataset_checksum`` over images.txt, image_class_labels.txt,
        classes.txt (if present) and every image's path and size.
    """
    base = require_root("cub", root, LAYOUT)
    images_file = require_file("cub", base, "images.txt", LAYOUT)
    labels_file = require_file("cub", base, "image_class_labels.txt", LAYOUT)
    images_raw, image_lines = read_text("cub", images_file, LAYOUT)
    labels_raw, label_lines = read_text("cub", labels_file, LAYOUT)
    files = [("images.txt", images_raw), ("image_class_labels.txt", labels_raw)]

    paths: dict[int, tuple[str, int]] = {}
    for number, line in image_lines:
        where = f"{images_file}: line {number}"
        image_id, path = split_id_line("cub", where, line, "<image_id> <path>", LAYOUT)
        if image_id in paths:
            raise fail("cub", where, f"image_id {image_id} already on line {paths[image_id][1]}", LAYOUT)
        paths[image_id] = (path, number)

    class_of: dict[int, int] = {}
    for number, line in label_lines:
        where = f"{labels_file}: line {number}"
        fields = line.split()
        if len(fields) != 2:
            raise fail("cub", where, f"expected '<image_id> <class_id>', got {line!r}", LAYOUT)
        image_id = parse_int("cub", where, "image_id", fields[0], LAYOUT)
        class_id = parse_int("cub", where, "class_id", fields[1], LAYOUT)
        if image_id not in paths:
            raise fail("cub", where, f"unknown image_id {image_id} (not in images.txt)", LAYOUT)
        if image_id in class_of:
            raise fail("cub", where, f"image_id {image_id} is labelled twice", LAYOUT)
        if not 1 <= class_id <= NUM_CLASSES:
            raise fail("cub", where, f"unknown class_id {class_id}; CUB classes are 1..{NUM_CLASSES}", LAYOUT)
        class_of[image_id] = class_id
    for image_id, (_, number) in paths.items():
        if image_id not in class_of:
            raise fail("cub", str(labels_file), f"no class for image_id {image_id} (images.txt line {number})", LAYOUT)

    names = {class_id: str(class_id) for class_id in range(1, NUM_CLASSES + 1)}
    names_file = base / "classes.txt"
    if names_file.is_file():
        names_raw, name_lines = read_text("cub", names_file, LAYOUT)
        files.append(("classes.txt", names_raw))
        for number, line in name_lines:
            where = f"{names_file}: line {number}"
            class_id, name = split_id_line("cub", where, line, "<class_id> <class_name>", LAYOUT)
            if class_id not in names:
                raise fail("cub", where, f"unknown class_id {class_id}; CUB classes are 1..{NUM_CLASSES}", LAYOUT)
            names[class_id] = name

    image_ids = list(paths)
    relative = [f"images/{paths[image_id][0]}" for image_id in image_ids]
    listed_in = [f"images.txt line {paths[image_id][1]}" for image_id in image_ids]
    return class_split_source(
        "cub", base, relative, listed_in, [class_of[image_id] for image_id in image_ids], LAST_TRAIN_CLASS,
        names.__getitem__, files, str(labels_file), LAYOUT,
    )
