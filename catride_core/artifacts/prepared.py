"""The prepared dataset on disk: ``manifest.csv``, ``meta.json`` and, for in-memory datasets, ``images.npy``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from catride_core.artifacts.files import atomic_path, read_json
from catride_core.data.prepared import PreparedData
from catride_core.errors import ArtifactError

if TYPE_CHECKING:  # only ``prepare`` builds a SourceData; readers need not import the dataset code
    from catride_core.data.source import SourceData

FORMAT_VERSION = 1


def save_prepared(
    out_dir: str | Path, source: SourceData, is_test: np.ndarray, dataset: str, root: str | None
) -> PreparedData:
    """Write manifest.csv, meta.json and (in-memory datasets) images.npy into ``out_dir``."""
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
    with atomic_path(out_dir, directory=True) as tmp:
        manifest.to_csv(tmp / "manifest.csv", index=False)
        (tmp / "meta.json").write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
        if source.images is not None:
            np.save(tmp / "images.npy", source.images)
    return PreparedData(manifest=manifest, meta=meta, images=source.images)


def load_prepared(data_dir: str | Path) -> PreparedData:
    """Read what ``save_prepared`` wrote.

    Raises:
        ArtifactError: a file is missing, or written by another format version.
    """
    data_dir = Path(data_dir)
    for name in ("manifest.csv", "meta.json"):
        if not (data_dir / name).is_file():
            raise ArtifactError(f"{data_dir / name}: missing; run the prepare stage first")
    meta = read_json(data_dir / "meta.json")
    if meta.get("format_version") != FORMAT_VERSION:
        raise ArtifactError(
            f"{data_dir / 'meta.json'}: format_version {meta.get('format_version')!r}, this code reads "
            f"{FORMAT_VERSION}; run the prepare stage again"
        )
    images_file = data_dir / "images.npy"
    return PreparedData(
        manifest=pd.read_csv(data_dir / "manifest.csv"),
        meta=meta,
        images=np.load(images_file, allow_pickle=False) if images_file.exists() else None,
    )
