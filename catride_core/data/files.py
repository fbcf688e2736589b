"""What the on-disk sources share: finding files, reading metadata lines, checksums, class indexing.

Every failure raises ``DataError`` whose message names the dataset, the file
(and line, where there is one) and ends with the layout the source expects, so
a user can fix their copy without reading the code.

The checksum of an on-disk dataset (``dataset_checksum``) is the SHA-256 of,
in this order:

1. for every metadata file the source read, in the order it read them: the
   line ``file <name> <byte count>\\n`` followed by the file's bytes (for gzip
   files, the decompressed bytes, so ``x`` and ``x.gz`` give the same digest);
2. for every image, sorted by path: the line ``image <path> <byte count>\\n``,
   where path is relative to the dataset root with ``/`` separators.

Image *contents* are not hashed (reading 120k SOP images would take minutes);
a changed, added, removed or renamed image, or one whose size changes, changes
the digest.
"""

from __future__ import annotations

import hashlib
import stat
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import numpy as np

from catride_core.data.source import SourceData
from catride_core.errors import DataError


def fail(dataset: str, where: str, problem: str, layout: str) -> DataError:
    """A ``DataError`` ``<dataset>: <where>: <problem>`` followed by the expected layout."""
    return DataError(f"{dataset}: {where}: {problem}\nexpected layout:\n{layout}")


def require_root(dataset: str, root: str | None, layout: str) -> Path:
    """The dataset folder, which must exist."""
    if root is None:
        raise fail(dataset, "prepare.root", "is not set; point it at your copy of the dataset", layout)
    path = Path(root).expanduser()
    if not path.is_dir():
        raise fail(dataset, str(path), "dataset root folder does not exist", layout)
    return path


def require_file(dataset: str, root: Path, name: str, layout: str) -> Path:
    """A metadata file ``root/name``, which must exist."""
    path = root / name
    if not path.is_file():
        raise fail(dataset, str(path), "missing metadata file", layout)
    return path


def read_text(dataset: str, path: Path, layout: str) -> tuple[bytes, list[tuple[int, str]]]:
    """A text metadata file: its raw bytes (for the checksum) and its non-blank lines.

    Returns:
        the bytes, and (1-based line number, stripped line) for every non-blank line.
    """
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise fail(dataset, str(path), f"not a UTF-8 text file (byte {exc.start})", layout) from None
    lines = [(number, line.strip()) for number, line in enumerate(text.splitlines(), start=1)]
    return raw, [(number, line) for number, line in lines if line]


def parse_int(dataset: str, where: str, field: str, value: str, layout: str) -> int:
    """An integer field of a metadata line."""
    try:
        return int(value)
    except ValueError:
        raise fail(dataset, where, f"{field} must be an integer, got {value!r}", layout) from None


def image_sizes(dataset: str, root: Path, paths: Sequence[str], listed_in: Sequence[str], layout: str) -> list[int]:
    """The byte size of every image; an image that is missing, empty or a link out of ``root`` names where it was listed.

    DVC tracks the dataset root as prepare's dependency: a linked file
    outside it could change without DVC seeing it, so such a link is refused
    (a link inside the root is read). An empty file is no image: refused here
    rather than when training first reads it.

    Args:
        paths: images relative to ``root``.
        listed_in: for each image, where the metadata lists it (``"images.txt line 7"``).
    """
    inside = root.resolve()
    sizes = []
    for path, where in zip(paths, listed_in, strict=True):
        image = root / path
        if image.is_symlink():
            target = image.resolve()
            if not target.exists():
                raise fail(dataset, str(image), f"a link to {target}, which does not exist (listed in {where})", layout)
            if not target.is_relative_to(inside):
                raise fail(dataset, str(image), f"links to {target}, outside the dataset root (listed in {where}); "
                           "copy the file into the root", layout)
        try:
            status = image.stat()
        except OSError:
            raise fail(dataset, str(image), f"image listed in {where} does not exist", layout) from None
        if not stat.S_ISREG(status.st_mode):
            raise fail(dataset, str(image), f"image listed in {where} is not a file (a truncated line?)", layout)
        if not status.st_size:
            raise fail(dataset, str(image), f"image is empty (0 bytes); listed in {where}", layout)
        sizes.append(status.st_size)
    return sizes


def dataset_checksum(files: Iterable[tuple[str, bytes]], images: Iterable[tuple[str, int]]) -> str:
    """SHA-256 of metadata files and (path, size) of images; the exact recipe is in the module docstring."""
    digest = hashlib.sha256()
    for name, content in files:
        digest.update(f"file {name} {len(content)}\n".encode())
        digest.update(content)
    for path, size in sorted(images):
        digest.update(f"image {path} {size}\n".encode())
    return digest.hexdigest()


def index_classes(class_ids: Sequence[int] | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Re-index class ids to 0..C-1 in sorted order.

    Returns:
        labels (Shape: (N,) int64) and the sorted distinct class ids (Shape: (C,)).
    """
    classes, labels = np.unique(np.asarray(class_ids, dtype=np.int64), return_inverse=True)
    return labels.astype(np.int64), classes


def check_both_sides(dataset: str, is_test: np.ndarray, rule: str, where: str, layout: str) -> None:
    """A fixed split must leave images on both sides, else training or evaluation has nothing."""
    for side, mask in (("train", ~is_test), ("test", is_test)):
        if not mask.any():
            raise fail(dataset, where, f"no {side} image ({rule})", layout)


def split_id_line(dataset: str, where: str, line: str, expected: str, layout: str) -> tuple[int, str]:
    """A metadata line ``<integer id> <rest>``: the id and the rest.

    Args:
        expected: the line's form for the error, e.g. ``"<image_id> <path>"``.
    """
    fields = line.split(maxsplit=1)
    if len(fields) != 2:
        raise fail(dataset, where, f"expected '{expected}', got {line!r}", layout)
    return parse_int(dataset, where, expected.split()[0].strip("<>"), fields[0], layout), fields[1]


def class_split_source(
    dataset: str,
    root: Path,
    paths: Sequence[str],
    listed_in: Sequence[str],
    class_ids: Sequence[int],
    last_train_class: int,
    class_name: Callable[[int], str],
    files: Iterable[tuple[str, bytes]],
    where: str,
    layout: str,
) -> SourceData:
    """A 224 px image dataset split class-disjoint by class id: ids up to ``last_train_class`` train, the rest test.

    Args:
        paths: images relative to ``root``; ``listed_in``: where each is listed.
        class_ids: the dataset's class id of each image.
        class_name: class id -> readable name.
        files: the metadata files read, for the checksum.
        where: the file that holds the labels, named if a side ends up empty.
    """
    sizes = image_sizes(dataset, root, paths, listed_in, layout)
    labels, classes = index_classes(class_ids)
    is_test = classes[labels] > last_train_class
    first_test = last_train_class + 1
    rule = f"classes 1-{last_train_class} train, {first_test}-{2 * last_train_class} test"
    check_both_sides(dataset, is_test, rule, where, layout)
    return SourceData(
        labels=labels,
        paths=list(paths),
        is_test=np.asarray(is_test, dtype=bool),
        image_size=224,
        channels=3,
        class_names=[class_name(int(class_id)) for class_id in classes],
        checksum=dataset_checksum(files, zip(paths, sizes)),
    )
