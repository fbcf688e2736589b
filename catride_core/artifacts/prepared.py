"""The prepared dataset on disk: ``manifest.csv``, ``meta.json`` and, for in-memory datasets, ``images.npy``.

An image-file dataset prepared with ``prepare.decode_cache`` also holds
``decoded.npy``, every image decoded and resized once (its meta records the
side in ``decoded_size``).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from catride_core.artifacts.files import file_digest, output_folder, read_json
from catride_core.data.images import resize_size
from catride_core.data.prepared import PreparedData
from catride_core.errors import ArtifactError

if TYPE_CHECKING:  # only ``prepare`` builds a SourceData; readers need not import the dataset code
    from catride_core.data.source import SourceData

FORMAT_VERSION = 1
#: the manifest's columns: every dataset has the first three, image-file datasets also ``path``
MANIFEST_COLUMNS = ("index", "label", "split")
#: the decode cache's file in the prepared folder
DECODED_FILE = "decoded.npy"
#: every file ``prepare`` may write in its folder, the only ones it replaces or removes there
PREPARED_FILES = frozenset(("manifest.csv", "images.npy", DECODED_FILE, "meta.json"))


def save_prepared(
    out_dir: str | Path,
    source: SourceData,
    is_test: np.ndarray,
    dataset: str,
    root: str | None,
    decoded: Iterable[np.ndarray] | None = None,
) -> PreparedData:
    """Write manifest.csv, meta.json and (in-memory datasets) images.npy into ``out_dir``.

    Args:
        decoded: for an image-file dataset, its decode cache: batches of every
            item decoded and resized (``data.images.decode_images``), in
            manifest order, streamed into decoded.npy. Shape: (B, 3, R, R) uint8

    Raises:
        ArtifactError: the decode cache would not fit on the disk (checked before any image is decoded).
    """
    manifest = pd.DataFrame(
        {"index": np.arange(len(source.labels)), "label": source.labels, "split": np.where(is_test, "test", "train")}
    )
    if source.paths is not None:
        manifest["path"] = source.paths
    meta = {
        "format_version": FORMAT_VERSION,
        "dataset": dataset,
        "root": str(Path(root).resolve()) if root is not None and source.paths is not None else None,
        "image_size": source.image_size,
        "channels": source.channels,
        "num_classes": int(len(np.unique(source.labels))),
        "class_names": source.class_names,
        "checksum": source.checksum,
        "n_train": int((~is_test).sum()),
        "n_test": int(is_test.sum()),
        "num_classes_train": int(len(np.unique(source.labels[~is_test]))),
        "num_classes_test": int(len(np.unique(source.labels[is_test]))),
    }
    decoded_shape = None
    if decoded is not None:
        side = resize_size(source.image_size)
        decoded_shape = (len(source.labels), source.channels, side, side)
        _check_space(Path(out_dir), int(np.prod(decoded_shape)))
        meta["decoded_size"] = side  # only here: a prepared folder without the cache stays as it was
    with output_folder(out_dir, PREPARED_FILES) as tmp:
        manifest.to_csv(tmp / "manifest.csv", index=False)
        if source.images is not None:
            np.save(tmp / "images.npy", source.images)
        if decoded is not None:
            _write_decoded(tmp / DECODED_FILE, decoded, decoded_shape)
        # what every reader checks the files against: a changed or foreign file is refused by name
        meta["files"] = {f.name: file_digest(f) for f in sorted(tmp.iterdir())}
        (tmp / "meta.json").write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    decoded_path = Path(out_dir) / DECODED_FILE if decoded is not None else None
    return PreparedData(manifest=manifest, meta=meta, images=source.images, decoded=decoded_path)


def _check_space(out_dir: Path, needed: int) -> None:
    """Refuse a decode cache that cannot fit, before hours of decoding end in a full disk."""
    folder = next(p for p in (out_dir, *out_dir.parents) if p.exists())
    free = shutil.disk_usage(folder).free
    if free < needed:
        raise ArtifactError(
            f"{out_dir}: the decode cache needs {needed / 1e9:.1f} GB, {folder} has {free / 1e9:.1f} GB free; "
            "free some space or set prepare.decode_cache: false"
        )


def _write_decoded(path: Path, batches: Iterable[np.ndarray], shape: tuple[int, ...]) -> None:
    """Stream uint8 batches into one .npy of ``shape``, never holding all of it in memory.

    Written through a file handle rather than a memory map, so that a full disk
    is an OSError (and the temporary folder is removed) rather than a SIGBUS.
    """
    header = {"descr": np.lib.format.dtype_to_descr(np.dtype(np.uint8)), "fortran_order": False, "shape": shape}
    written = 0
    with path.open("wb") as handle:
        np.lib.format.write_array_header_1_0(handle, header)
        for batch in batches:
            if batch.dtype != np.uint8 or batch.shape[1:] != shape[1:] or written + len(batch) > shape[0]:
                raise ValueError(f"decode cache: a {batch.dtype} batch {batch.shape} does not fit uint8 {shape}")
            handle.write(np.ascontiguousarray(batch).data)
            written += len(batch)
    if written != shape[0]:
        raise ValueError(f"decode cache: {written} images written, {shape[0]} expected")


def load_prepared(data_dir: str | Path) -> PreparedData:
    """Read what ``save_prepared`` wrote, checking every file against what ``meta.json`` recorded.

    Raises:
        ArtifactError: a file is missing, changed since ``prepare`` wrote it
            (its SHA-256 differs), unreadable, or inconsistent with the others
            (manifest columns, row counts, image shape), or the folder was
            written by another format version. The message names the file.
    """
    data_dir = Path(data_dir)
    meta_file = data_dir / "meta.json"
    if not meta_file.is_file():
        raise ArtifactError(f"{meta_file}: missing; run the prepare stage first")
    meta = read_json(meta_file)
    if meta.get("format_version") != FORMAT_VERSION:
        raise ArtifactError(
            f"{meta_file}: format_version {meta.get('format_version')!r}, this code reads "
            f"{FORMAT_VERSION}; run the prepare stage again"
        )
    for name, digest in meta.get("files", {}).items():
        path = data_dir / name
        if not path.is_file():
            raise ArtifactError(f"{path}: missing; run the prepare stage again")
        if file_digest(path) != digest:
            raise ArtifactError(f"{path}: changed since prepare wrote it (checksum differs); run the prepare stage again")
    manifest = _read_manifest(data_dir / "manifest.csv", lazy=meta.get("root") is not None)
    images = decoded = None
    if meta.get("root") is None:
        images = _read_images(data_dir / "images.npy", len(manifest), meta)
    elif meta.get("decoded_size") is not None:
        decoded = _check_decoded(data_dir / DECODED_FILE, len(manifest), meta)
    return PreparedData(manifest=manifest, meta=meta, images=images, decoded=decoded)


def _read_manifest(path: Path, lazy: bool) -> pd.DataFrame:
    try:
        manifest = pd.read_csv(path)
    except FileNotFoundError:
        raise ArtifactError(f"{path}: missing; run the prepare stage first") from None
    except (OSError, ValueError, pd.errors.ParserError) as exc:
        raise ArtifactError(f"{path}: not a readable CSV ({exc})") from None
    needed = (*MANIFEST_COLUMNS, "path") if lazy else MANIFEST_COLUMNS
    missing = [c for c in needed if c not in manifest.columns]
    if missing:
        raise ArtifactError(f"{path}: lacks the columns {missing}")
    if not set(manifest["split"]) <= {"train", "test"}:
        raise ArtifactError(f"{path}: column 'split' holds values other than train and test")
    return manifest


def _read_images(path: Path, rows: int, meta: dict) -> np.ndarray:
    return _read_uint8(path, (rows, meta.get("channels"), meta.get("image_size"), meta.get("image_size")))


def _check_decoded(path: Path, rows: int, meta: dict) -> Path:
    """The decode cache's path, once its header shows the shape the manifest and meta describe."""
    _read_uint8(path, (rows, meta.get("channels"), meta.get("decoded_size"), meta.get("decoded_size")), mmap=True)
    return path


def _read_uint8(path: Path, expected: tuple, mmap: bool = False) -> np.ndarray:
    """A .npy file of uint8 ``expected``, loaded (or only memory-mapped, reading just its header)."""
    try:
        images = np.load(path, allow_pickle=False, mmap_mode="r" if mmap else None)
    except FileNotFoundError:
        raise ArtifactError(f"{path}: missing; run the prepare stage again") from None
    except (OSError, ValueError, EOFError) as exc:
        raise ArtifactError(f"{path}: not a readable .npy array ({exc})") from None
    if images.dtype != np.uint8 or images.shape != expected:
        raise ArtifactError(
            f"{path}: holds {images.dtype} {images.shape}, the manifest and meta.json describe uint8 {expected}"
        )
    return images
