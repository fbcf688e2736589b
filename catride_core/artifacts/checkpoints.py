"""Model checkpoints: the weights, how to rebuild the model, the resolved params and the training state.

Checkpoints hold only tensors, numbers, strings, lists and dicts, and are read
with ``torch.load(..., weights_only=True)``: loading a file never runs code
from it. They are written by ``files.save_torch``: the same content gives the
same bytes, whether the run was resumed or not (DVC tracks them by hash).
"""

from __future__ import annotations

import pickle
import pickletools
import re
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from catride_core.artifacts.files import save_torch
from catride_core.errors import ArtifactError
from catride_core.models import Embedder, build_model, input_mismatch
from catride_core.runtime import runtime_record

FORMAT_VERSION = 1
#: every opcode of Python's pickle format
_PICKLE_OPCODES = frozenset(ord(opcode.code) for opcode in pickletools.opcodes)


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
        "state_dict": model.state_dict(),
        "params": dict(params),
        "state": dict(state),
        "optimizer": optimizer.state_dict() if optimizer is not None else None,
        # what float results depend on beyond the params: the same weights need the same of each
        "runtime": runtime_record(_device(model)),
    }
    save_torch(path, payload)


def _device(model: Embedder) -> torch.device:
    """Where the model's parameters live (the CPU for a model without any)."""
    parameter = next(model.parameters(), None)
    return torch.device("cpu") if parameter is None else parameter.device


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """The payload of a checkpoint, read without running any code from the file.

    Raises:
        ArtifactError: missing file, not a torch checkpoint, holding objects
            other than tensors and plain data, or of another format version.
    """
    path = Path(path)
    if not path.is_file():
        raise ArtifactError(f"{path}: no such checkpoint")
    try:
        with warnings.catch_warnings():
            # a file pickle.dump wrote draws a warning before it is refused: the refusal says it all
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any failure to parse an untrusted file means it cannot be used
        # torch's weights-only unpickler names what it refused: an object's class ("Unsupported global: GLOBAL
        # builtins.open") or, in a file pickle.dump wrote rather than torch.save, a pickle opcode it never runs
        # (a byte that is no pickle opcode at all is damage, not a refusal)
        refused = re.search(r"Unsupported (?:global: GLOBAL \S+|operand (\d+))", str(exc))
        if isinstance(exc, pickle.UnpicklingError) and refused and (
                refused[1] is None or int(refused[1]) in _PICKLE_OPCODES):
            raise ArtifactError(f"{path}: refused: holds more than tensors and plain data ({refused[0]})") from None
        raise ArtifactError(f"{path}: not a readable checkpoint ({type(exc).__name__})") from None
    if not isinstance(payload, dict) or "state_dict" not in payload or "model" not in payload:
        raise ArtifactError(f"{path}: not a catride checkpoint (no model header or state_dict)")
    if payload.get("format_version") != FORMAT_VERSION:
        raise ArtifactError(
            f"{path}: checkpoint format_version {payload.get('format_version')!r}, this code reads {FORMAT_VERSION}"
        )
    return payload


def load_checkpoint(
    path: str | Path, device: torch.device | str = "cpu", data_meta: Mapping[str, Any] | None = None
) -> tuple[Embedder, dict[str, Any]]:
    """Rebuild the model of a checkpoint (weights loaded, eval mode) and return its payload too.

    Args:
        path: the checkpoint.
        device: where the model goes.
        data_meta: the prepared data's ``meta``, if the model is to run on it:
            its image size and channels must be what the model takes.

    Raises:
        ArtifactError: as ``read_checkpoint``, weights that do not fit the model
            its header names or that hold NaN or inf, or a model that cannot take the prepared images.
    """
    payload = read_checkpoint(path)
    header = payload["model"]
    try:
        model = build_model(header["arch"], int(header["embedding_dim"]))
        model.load_state_dict(payload["state_dict"])
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        problem = str(exc).strip().splitlines()[0]
        raise ArtifactError(f"{path}: weights do not fit the model its header names {header}: {problem}") from None
    diverged = [name for name, value in model.state_dict().items()
                if value.is_floating_point() and not bool(torch.isfinite(value).all())]
    if diverged:
        raise ArtifactError(f"{path}: the weights hold NaN or inf ({', '.join(diverged[:3])}): the run that wrote "
                            "them diverged; retrain it with a lower learning rate or step size")
    if data_meta is not None:
        mismatch = input_mismatch(model, data_meta["image_size"], data_meta["channels"])
        if mismatch:
            raise ArtifactError(f"{path}: {mismatch}")
    return model.to(device).eval(), payload


def check_start(path: str | Path, payload: Mapping[str, Any]) -> None:
    """Fine-tuning starts from what pretrain wrote: a checkpoint recording its params and its training state.

    ``finetune`` reads ``params.pretrain.num_workers`` from it and carries its
    params and state into the fine-tuned checkpoint.

    Raises:
        ArtifactError: naming the file, when either is missing or not a mapping.
    """
    params, state = payload.get("params"), payload.get("state")
    pretrain = params.get("pretrain") if isinstance(params, dict) else None
    if not isinstance(pretrain, dict) or not isinstance(pretrain.get("num_workers"), int) or not isinstance(state, dict):
        raise ArtifactError(f"{path}: not a checkpoint written by pretrain (its params.pretrain or its training "
                            "state is missing); start from models/start.pt")

