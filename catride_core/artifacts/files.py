"""Atomic writers and safe readers of the pipeline's small files: JSON, CSV, text, PNG, torch files.

Every writer is atomic: it writes next to the target and renames at the end,
so a failed stage never leaves a half-written output behind. Written files get
the user's umask (a team sharing a machine or a DVC cache can read them).

A writer replaces only what it writes itself: a file by its name, and in an
output folder only the files of the names its command owns. A folder that
holds anything else is refused before any work, so a user's file is never
removed, whatever path an output is given.
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import json
import math
import os
import shutil
import sys
import tempfile
from collections.abc import Collection, Iterator, Mapping, Sequence
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


#: what every temporary file and folder of a writer carries in its name: a leftover of a killed run is removed
#: by it, and a user's own hidden file beside an output (``.m.pt.backup``) never is
TEMPORARY_INFIX = ".catride-tmp-"


def _temporary_prefix(target: Path) -> str:
    return f".{target.name}{TEMPORARY_INFIX}"


def _remove_leftovers(target: Path) -> None:
    """Remove the temporaries a killed run (SIGKILL, a power cut) left while writing ``target``: each output has one writer."""
    for stale in target.parent.glob(glob.escape(_temporary_prefix(target)) + "*"):
        shutil.rmtree(stale) if stale.is_dir() and not stale.is_symlink() else stale.unlink()


@contextlib.contextmanager
def atomic_path(target: str | Path) -> Iterator[Path]:
    """Yield a temporary file path beside ``target``; move it into place only if the block succeeds.

    The temporary is ``.<name>.catride-tmp-<random>`` in the target's folder,
    removed if the block fails, or (left by a killed run) the next time the
    same target is written.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    _remove_leftovers(target)
    handle, name = tempfile.mkstemp(prefix=_temporary_prefix(target), dir=target.parent)
    os.close(handle)
    tmp = Path(name)
    os.chmod(tmp, 0o666 & ~_umask())
    try:
        yield tmp
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def _refused_folder(folder: Path) -> str | None:
    """Why ``folder`` can never be an output folder (None if it can): a folder whose loss no rerun gives back.

    The check is on the resolved path, so ``.``, ``..`` and symbolic links are
    seen for what they are.
    """
    where = folder.resolve()
    if where == Path.cwd().resolve():
        return "the current folder"
    if where == Path.home().resolve() or where.parent in (Path("/home"), Path("/Users")):
        return "a home folder"
    if len(where.parts) <= 2 or where.parent == Path("/usr"):
        return "a system folder"
    if any((where / marker).exists() for marker in ("dvc.yaml", ".dvc", ".git")):
        return "a project's root folder"
    return None


def ensure_folder_writable(folder: str | Path, owned: Collection[str]) -> None:
    """Fail now, before any work, unless ``folder`` can be written holding nothing but files of ``owned`` names.

    An output folder is written only where it is new, empty, or holds files of
    the names its command writes (as its earlier run left them), never where
    writing could remove, replace or mix with anything else.

    Raises:
        ArtifactError: naming the folder, and what makes it a place no output
            may go (the current, a home, a system or a project's root folder),
            or the entries the pipeline did not write; or, as
            ``ensure_writable``, a folder that cannot be created.
    """
    folder = Path(folder)
    refused = _refused_folder(folder)
    if refused is not None:
        raise ArtifactError(f"{folder}: {refused}, not an output folder; name a new folder for the output")
    foreign = sorted(p.name for p in folder.iterdir() if p.name not in owned or not p.is_file()) if folder.is_dir() else []
    if foreign:
        shown = ", ".join(foreign[:5]) + (f" and {len(foreign) - 5} more" if len(foreign) > 5 else "")
        raise ArtifactError(f"{folder}: holds what the pipeline did not write ({shown}); writing the output there "
                            "could replace it: name a new or empty folder, or move these away")
    ensure_writable(folder)


@contextlib.contextmanager
def output_folder(folder: str | Path, owned: Collection[str]) -> Iterator[Path]:
    """Yield an empty temporary folder to fill; then move its files into ``folder``, the stale ones of ``owned`` removed.

    Every file is written in full before the first one is moved, so a failure
    (a full disk) leaves ``folder`` as it was. Only files of ``owned`` names are
    ever replaced or removed (the latter: an earlier run's output this run does
    not write, such as an attack no longer run), and ``folder`` is checked as
    ``ensure_folder_writable`` does, so nothing the pipeline did not write is touched.
    """
    folder = Path(folder)
    ensure_folder_writable(folder, owned)
    _remove_leftovers(folder)
    tmp = Path(tempfile.mkdtemp(prefix=_temporary_prefix(folder), dir=folder.parent))
    try:
        yield tmp
        written = {p.name for p in tmp.iterdir()}
        if not written <= set(owned):
            raise ValueError(f"{folder}: a writer made {sorted(written - set(owned))}, names it does not own")
        folder.mkdir(exist_ok=True)
        for name in sorted(written):
            os.replace(tmp / name, folder / name)
        for name in sorted(set(owned) - written):
            (folder / name).unlink(missing_ok=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


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


def read_text(path: str | Path) -> str:
    """A text file the project keeps (``docs/published.csv``).

    Raises:
        ArtifactError: the file is missing or unreadable.
    """
    path = Path(path)
    try:
        return path.read_text()
    except FileNotFoundError:
        raise ArtifactError(f"{path}: missing") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ArtifactError(f"{path}: not a readable text file ({exc})") from None


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


def save_figures(folder: str | Path, figures: Mapping[str, Any], names: Collection[str]) -> None:
    """Figures as ``<folder>/<name>.png``, written by ``output_folder``; the figures are closed.

    ``names`` are every figure the folder may hold: one of them not drawn this time is removed.
    """
    import matplotlib.pyplot as plt

    with output_folder(folder, {f"{name}.png" for name in names}) as tmp:
        for name, figure in figures.items():
            figure.savefig(tmp / f"{name}.png", format="png", metadata={"Software": None})
            plt.close(figure)


def save_figure(path: str | Path, figure: Any) -> None:
    """A matplotlib figure as PNG (metadata stripped, so equal plots give equal bytes); the figure is closed."""
    import matplotlib.pyplot as plt

    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png", metadata={"Software": None})
    plt.close(figure)


def save_torch(path: str | Path, payload: Any) -> None:
    """Tensors and plain data as a torch file (atomically) whose bytes depend on the content alone.

    DVC tracks a file by its hash, so equal content must give equal bytes,
    whatever the history of the objects saved. ``torch.save`` does not promise
    it: pickle writes an object met twice once and refers back to it, but two
    equal copies twice, so a resumed run (its optimiser's key strings
    unpickled from the training state, distinct from the interned literals a
    fresh run holds) wrote other bytes than an uninterrupted one for the same
    weights; tensors sharing a storage are stored once, and a view stores its
    whole storage; and the archive's inner folder is named after the file
    written (here the temporary one). So the payload is rebuilt first
    (``_canonical``) and written through a file handle, for which torch names
    that folder ``archive``. Dict order is kept: it is content that a load
    gives back. The handle is an unbuffered Python file: torch's own file
    writer reports a full disk as an opaque RuntimeError ("unexpected pos"), a
    Python file as the OSError it is.

    Raises:
        TypeError: the payload holds something other than tensors, dicts,
            lists, tuples, strings, numbers, booleans and None.
        ArtifactError: the write failed (a full disk, a read-only folder),
            naming ``path`` and the system's reason; the previous file is kept.
    """
    canonical = _canonical(payload)
    try:
        with atomic_path(path) as tmp, open(tmp, "wb", buffering=0) as handle:
            torch.save(canonical, handle)
    except OSError as exc:
        raise ArtifactError(f"{path}: cannot be written ({exc.strerror or exc})") from None


def _canonical(value: Any) -> Any:
    """A fresh copy of ``value`` in which equal strings are one object and each tensor owns its own storage.

    Each tensor becomes a contiguous CPU copy in a storage of its own, each
    container a new plain ``dict``, ``list`` or ``tuple`` (so no two places
    share one), each string the interned one, each number its plain type.
    """
    if isinstance(value, torch.Tensor):
        return value.detach().to("cpu", memory_format=torch.contiguous_format, copy=True)
    if isinstance(value, Mapping):
        return {_canonical(key): _canonical(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_canonical(item) for item in value]
    if isinstance(value, tuple):
        return tuple(_canonical(item) for item in value)
    if isinstance(value, str):
        return sys.intern(str.__str__(value))  # a str subclass (an enum member) as its plain text
    for plain in (bool, int, float):  # bool first: it is an int too
        if isinstance(value, plain):
            return plain(value)
    if value is None:
        return None
    raise TypeError(f"cannot be saved as plain data: a {type(value).__module__}.{type(value).__qualname__}")
