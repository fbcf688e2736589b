"""Atomic writers and safe readers of the pipeline's small files: JSON, CSV, text, PNG, tensors.

Every writer is atomic: it writes next to the target and renames at the end,
so a failed stage never leaves a half-written output behind. Written files get
the user's umask (a team sharing a machine or a DVC cache can read them).
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import json
import math
import os
import shutil
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from catride_core.errors import ArtifactError

#: decimals kept in saved scores, so equal results give byte-identical JSON
SCORE_DECIMALS = 4


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(target: str | Path, directory: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside ``target``; move it into place only if the block succeeds.

    The temporary path is ``.<name>.<random>`` in the target's folder, removed
    if the block fails. A temporary left by a killed run (SIGKILL, a power cut)
    is removed the next time the same target is written: each output has one
    writer.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    for stale in target.parent.glob(f".{glob.escape(target.name)}.*"):
        shutil.rmtree(stale) if stale.is_dir() else stale.unlink()
    if directory:
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
        os.chmod(tmp, 0o777 & ~_umask())
    else:
        handle, name = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
        os.close(handle)
        tmp = Path(name)
        os.chmod(tmp, 0o666 & ~_umask())
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


def file_digest(path: str | Path) -> str:
    """SHA-256 of a file's bytes, read in chunks."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def ensure_writable(*targets: str | Path) -> None:
    """Fail now, before any work, if an output cannot be written where it is asked for.

    Creates each target's folder and writes (then removes) a probe file in it.

    Raises:
        ArtifactError: naming the target whose folder cannot be created (a
            path under a file) or written to (read-only).
    """
    for target in map(Path, targets):
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryFile(dir=target.parent):
                pass
        except OSError as exc:
            raise ArtifactError(f"{target}: cannot be written ({exc.strerror or exc}); nothing was computed") from None


def rounded(values: Mapping[str, float]) -> dict[str, float]:
    """Scores rounded to ``SCORE_DECIMALS``, so equal results give byte-identical JSON."""
    return {key: round(float(value), SCORE_DECIMALS) for key, value in values.items()}


def _non_finite(payload: Any, prefix: str = "") -> list[str]:
    """The dotted keys of every NaN or infinite number in a JSON payload."""
    if isinstance(payload, Mapping):
        return [key for name, value in payload.items() for key in _non_finite(value, f"{prefix}{name}.")]
    if isinstance(payload, (list, tuple)):
        return [key for i, value in enumerate(payload) for key in _non_finite(value, f"{prefix}{i}.")]
    return [prefix[:-1]] if isinstance(payload, float) and not math.isfinite(payload) else []


def write_json(path: str | Path, payload: Mapping[str, Any]) -> None:
    """Pretty, key-sorted JSON (stable bytes for identical content).

    Raises:
        ArtifactError: naming the keys of NaN or infinite numbers, which JSON cannot hold (Python would
            write a bare ``NaN`` that most readers, and ``read_json``, refuse); nothing is written.
    """
    bad = _non_finite(payload)
    if bad:
        raise ArtifactError(f"{path}: {', '.join(bad)} are not finite numbers; not written")
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(payload, indent=2, sort_keys=True, allow_nan=False) + "\n")


class _BareConstant(ValueError):
    """``NaN``, ``Infinity`` or ``-Infinity`` in a JSON text: Python's extension, which other readers refuse."""


def _refuse_constant(name: str) -> Any:
    raise _BareConstant(name)


def read_json(path: str | Path) -> dict[str, Any]:
    """A JSON object written by a stage.

    Raises:
        ArtifactError: the file is missing, unreadable, not a JSON object, or holds a bare ``NaN`` or
            ``Infinity`` (which ``write_json`` never writes).
    """
    path = Path(path)
    try:
        payload = json.loads(path.read_text(), parse_constant=_refuse_constant)
    except FileNotFoundError:
        raise ArtifactError(f"{path}: missing; run the stage that writes it first") from None
    except _BareConstant as exc:
        raise ArtifactError(f"{path}: holds {exc}, which is not JSON; rerun the stage that writes it") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ArtifactError(f"{path}: not a readable JSON file ({exc})") from None
    if not isinstance(payload, dict):
        raise ArtifactError(f"{path}: expected a JSON object, got {type(payload).__name__}")
    return payload


def write_text(path: str | Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_csv(path: str | Path, table: pd.DataFrame, float_format: str | None = "%.6g") -> None:
    """A table as CSV; floats with 6 significant digits unless ``float_format`` is None (every digit)."""
    with atomic_path(path) as tmp:
        table.to_csv(tmp, index=False, float_format=float_format)


def read_csv(path: str | Path, columns: Sequence[str] | None = None) -> pd.DataFrame:
    """A CSV table written by a stage (a training log, bootstrap resamples, per-query attack results).

    With ``columns``, only those, each checked to hold numbers (the other columns are left out).

    Raises:
        ArtifactError: the file is missing or unreadable, or a column is absent or holds something other than numbers.
    """
    path = Path(path)
    try:
        table = pd.read_csv(path)
    except FileNotFoundError:
        raise ArtifactError(f"{path}: missing; run the stage that writes it first") from None
    except (OSError, UnicodeDecodeError, ValueError) as exc:  # pandas' parser errors are ValueErrors
        raise ArtifactError(f"{path}: not a readable CSV file ({str(exc).strip()})") from None
    if columns is None:
        return table
    absent = [column for column in columns if column not in table.columns]
    if absent:
        raise ArtifactError(f"{path}: lacks the columns {absent}")
    # a table without rows has no numbers to check (its columns read as text)
    text = [column for column in columns if len(table) and not pd.api.types.is_numeric_dtype(table[column])]
    if text:
        raise ArtifactError(f"{path}: the columns {text} hold something other than numbers")
    return table[list(columns)]


def read_png(path: str | Path) -> bytes:
    """A PNG file's bytes (a figure to embed in a report).

    Raises:
        ArtifactError: the file is missing, unreadable, or not a PNG.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ArtifactError(f"{path}: missing; run the stage that writes it first") from None
    except OSError as exc:
        raise ArtifactError(f"{path}: not readable ({exc.strerror or exc})") from None
    if not data.startswith(b"\x89PNG\r\n\x1a\n"):
        raise ArtifactError(f"{path}: not a PNG image")
    return data


def save_figures(folder: str | Path, figures: Mapping[str, Any]) -> None:
    """Figures as ``<folder>/<name>.png``, the folder replaced as a whole (atomically); the figures are closed."""
    import matplotlib.pyplot as plt

    with atomic_path(folder, directory=True) as tmp:
        for name, figure in figures.items():
            figure.savefig(tmp / f"{name}.png", format="png", metadata={"Software": None})
            plt.close(figure)


def save_figure(path: str | Path, figure: Any) -> None:
    """A matplotlib figure as PNG (metadata stripped, so equal plots give equal bytes); the figure is closed."""
    import matplotlib.pyplot as plt

    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png", metadata={"Software": None})
    plt.close(figure)


def save_tensor(path: str | Path, tensor: torch.Tensor) -> None:
    """A tensor (e.g. adversarial images kept for a report), on the CPU."""
    with atomic_path(path) as tmp:
        torch.save(tensor.detach().cpu(), tmp)
