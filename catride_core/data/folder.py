"""A user's own retrieval data: one sub-folder of images per class.

The folder fixes no split (``is_test`` is None): the prepare stage applies
``prepare.split``, which should be ``class_disjoint`` for the retrieval
protocol of docs/method.md section 1 (seeded by ``base.seed``, sized by
``prepare.test_fraction``).
"""

from __future__ import annotations

import numpy as np

from catride_core.data.files import dataset_checksum, fail, image_sizes, require_root
from catride_core.data.source import SourceData

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")

LAYOUT = """\
<root>/
  <class_name>/                  one folder per class (folder names sorted = class order)
    <image>.jpg                  files directly inside, ending in .jpg .jpeg .png .bmp .gif
    ...                          .webp .tif .tiff (any case); other files, sub-folders and
  <class_name>/                  names starting with "." are ignored
    ..."""


def load_folder(root: str | None) -> SourceData:
    """Read a ``root/<class_name>/<image>`` tree.

    Returns:
        paths ``<class_name>/<image>`` relative to ``root``, labels 0..C-1 in
        sorted folder-name order, ``is_test`` None, the folder names as class
        names, and the checksum of ``files.dataset_checksum`` over every
        image's path and size (there is no metadata file).
    """
    base = require_root("folder", root, LAYOUT)
    class_dirs = sorted(entry for entry in base.iterdir() if entry.is_dir() and not entry.name.startswith("."))
    if len(class_dirs) < 2:
        raise fail("folder", str(base), f"found {len(class_dirs)} class folders, need at least 2", LAYOUT)
    paths, labels = [], []
    for label, class_dir in enumerate(class_dirs):
        images = sorted(
            entry.name
            for entry in class_dir.iterdir()
            # not is_file(): a broken link is refused by image_sizes, not passed over
            if not entry.is_dir() and not entry.name.startswith(".") and entry.suffix.lower() in IMAGE_SUFFIXES
        )
        if not images:
            raise fail("folder", str(class_dir), "class folder holds no image file", LAYOUT)
        paths += [f"{class_dir.name}/{name}" for name in images]
        labels += [label] * len(images)
    sizes = image_sizes("folder", base, paths, ["the folder listing"] * len(paths), LAYOUT)
    return SourceData(
        labels=np.asarray(labels, dtype=np.int64),
        paths=paths,
        image_size=224,
        channels=3,
        class_names=[class_dir.name for class_dir in class_dirs],
        checksum=dataset_checksum([], zip(paths, sizes)),
    )
