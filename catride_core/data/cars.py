"""Cars196 (Krause et al. 2013): 16,185 car photos of 196 models.

Zero-shot retrieval protocol (docs/method.md section 1): classes 1-98 train,
99-196 test. The annotation file's own ``test`` flag (a classification split)
and its bounding boxes are not used.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import scipy.io

from catride_core.data.files import (
    class_split_source,
    fail,
    require_file,
    require_root,
)
from catride_core.data.source import SourceData

NUM_CLASSES = 196
LAST_TRAIN_CLASS = 98

LAYOUT = """\
<root>/                          e.g. the folder holding the unpacked car_ims.tgz
  cars_annos.mat                 MATLAB file: 'annotations', a 1 x N struct array with fields
                                 relative_im_path ('car_ims/000001.jpg'), bbox_x1, bbox_y1,
                                 bbox_x2, bbox_y2, class (1..196), test; and 'class_names',
                                 a 1 x 196 cell array of strings
  car_ims/
    000001.jpg
    ..."""


def _read_annotations(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """The 'annotations' struct array (Shape: (N,)) and 'class_names' (Shape: (K,)) of cars_annos.mat."""
    try:
        content = scipy.io.loadmat(path, squeeze_me=True)
    except Exception as exc:  # scipy raises ValueError, TypeError, OSError... on a damaged file
        raise fail("cars", str(path), f"not a readable MATLAB file ({exc})", LAYOUT) from None
    for key in ("annotations", "class_names"):
        if key not in content:
            found = sorted(name for name in content if not name.startswith("__"))
            raise fail("cars", str(path), f"no variable {key!r}; found {found}", LAYOUT)
    annotations = np.atleast_1d(content["annotations"])
    fields = annotations.dtype.names or ()
    missing = [field for field in ("relative_im_path", "class") if field not in fields]
    if missing:
        raise fail("cars", str(path), f"'annotations' lacks fields {missing}; has {list(fields)}", LAYOUT)
    return annotations, np.atleast_1d(content["class_names"])


def load_cars(root: str | None) -> SourceData:
    """Read Cars196 from ``cars_annos.mat`` and ``car_ims/``.

    Returns:
        paths as in ``relative_im_path`` (relative to ``root``), labels 0..C-1 in
        class order, ``is_test`` = class > 98, class names from 'class_names',
        and the checksum of ``files.dataset_checksum`` over cars_annos.mat and
        every image's path and size.
    """
    base = require_root("cars", root, LAYOUT)
    annos_file = require_file("cars", base, "cars_annos.mat", LAYOUT)
    annotations, class_names = _read_annotations(annos_file)
    if len(class_names) != NUM_CLASSES:
        raise fail("cars", str(annos_file), f"'class_names' holds {len(class_names)} names, expected 196", LAYOUT)

    paths, class_ids = [], []
    for number, annotation in enumerate(annotations, start=1):
        where = f"{annos_file}: annotation {number}"
        path, class_id = annotation["relative_im_path"], annotation["class"]
        if not isinstance(path, str) or not path:
            raise fail("cars", where, f"relative_im_path must be a string, got {path!r}", LAYOUT)
        try:
            class_id = int(class_id)
        except (TypeError, ValueError):
            raise fail("cars", where, f"class must be an integer, got {class_id!r}", LAYOUT) from None
        if not 1 <= class_id <= NUM_CLASSES:
            raise fail("cars", where, f"unknown class {class_id}; Cars196 classes are 1..{NUM_CLASSES}", LAYOUT)
        paths.append(path)
        class_ids.append(class_id)

    listed_in = [f"cars_annos.mat annotation {number}" for number in range(1, len(paths) + 1)]
    return class_split_source(
        "cars", base, paths, listed_in, class_ids, LAST_TRAIN_CLASS, lambda class_id: str(class_names[class_id - 1]),
        [("cars_annos.mat", annos_file.read_bytes())], str(annos_file), LAYOUT,
    )
