"""All file I/O of the pipeline: prepared data, checkpoints, JSON and CSV.

Every writer is atomic: it writes next to the target and renames at the end,
so a failed stage never leaves a half-written output behind.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from catride_core.data import PreparedData, SourceData
from catride_core.models import Embedder, build_model

FORMAT_VERSION = 1


@contextlib.contextmanager
def atomic_path(target: str | Path, directory: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside ``target``; move it into place only if the block succeeds."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    if directory:
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    else:
        handle, name = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
        os.close(handle)
        tmp = Path(name)
    try:
        yield tmp
        if directory and target.exists():
            shutil.rmtree(target)
        os.replace(tmp, target)
    finally:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        elif tmp.exists():
            tmp.unlink()


def write_json(path: str | Path, payload: Mapping[str, Any]) -> None:
    """Pretty, key-sorted JSON (stable bytes for identical content)."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(payload, indent=2, sort_keys=True) + "\n")


def read_json(path: str | Path) -> dict[str, Any]:
    return json.loads(Path(path).read_text())


def write_text(path: str | Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def save_figure(path: str | Path, figure: Any) -> None:
    """A matplotlib figure as PNG (metadata stripped, so equal plots give equal bytes); the figure is closed."""
    import matplotlib.pyplot as plt

    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png", metadata={"Software": None})
    plt.close(figure)


def read_yaml_keeping_comments(path: str | Path) -> Any:
    """A YAML file as a mapping that writes back with its comments (ruamel round trip)."""
    from ruamel.yaml import YAML

    return YAML().load(Path(path).read_text())


def write_yaml_keeping_comments(path: str | Path, data: Any) -> None:
    from ruamel.yaml import YAML

    yaml_writer = YAML()
    yaml_writer.width = 120
    with atomic_path(path) as tmp, tmp.open("w") as handle:
        yaml_writer.dump(data, handle)


def write_csv(path: str | Path, table: pd.DataFrame) -> None:
    with atomic_path(path) as tmp:
        table.to_csv(tmp, index=False, float_format="%.6g")


def save_tensor(path: str | Path, tensor: torch.Tensor) -> None:
    """A tensor (e.g. adversarial images kept for a report), on the CPU."""
    with atomic_path(path) as tmp:
        torch.save(tensor.detach().cpu(), tmp)


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
    """Read what ``save_prepared`` wrote."""
    data_dir = Path(data_dir)
    for name in ("manifest.csv", "meta.json"):
        if not (data_dir / name).is_file():
            raise FileNotFoundError(f"{data_dir / name}: missing; run the prepare stage first")
    images_file = data_dir / "images.npy"
    return PreparedData(
        manifest=pd.read_csv(data_dir / "manifest.csv"),
        meta=read_json(data_dir / "meta.json"),
        images=np.load(images_file) if images_file.exists() else None,
    )


def save_checkpoint(
    path: str | Path,
    model: Embedder,
    params: Mapping[str, Any],
    state: Mapping[str, Any],
    optimizer: torch.optim.Optimizer | None = None,
) -> None:
    """Model weights, how to rebuild the model, the resolved params and the training state."""
    payload = {
        "format_version": FORMAT_VERSION,
        "model": {"arch": model.arch, "embedding_dim": model.embedding_dim},
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "params": dict(params),
        "state": dict(state),
        "optimizer": optimizer.state_dict() if optimizer is not None else None,
    }
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)


def load_checkpoint(path: str | Path, device: torch.device | str = "cpu") -> tuple[Embedder, dict[str, Any]]:
    """Rebuild the model of a checkpoint (weights loaded, eval mode) and return its payload too."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such checkpoint")
    payload = torch.load(path, map_location="cpu", weights_only=False)
    model = build_model(payload["model"]["arch"], payload["model"]["embedding_dim"])
    model.load_state_dict(payload["state_dict"])
    return model.to(device).eval(), payload
