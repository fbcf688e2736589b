"""The resumable state of a training run (``pretrain``, ``finetune``): written while it runs, removed when it ends."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from catride_core.artifacts.files import save_torch
from catride_core.errors import ArtifactError
from catride_core.progress import Progress


class TrainingState:
    """The resumable state of one training run: a file that lives while the run does.

    It holds the weights, the optimiser, the defense's running state and the
    ``Progress``, plus the run's ``identity`` (the resolved params and the
    digests of its inputs). ``load`` refuses a state of another identity, so a
    run never continues from a state made with other params or data. The file
    is written atomically, read with ``weights_only=True``, and removed when the
    run completes; it must live outside the stage's declared outputs, which
    ``dvc repro`` deletes before running the stage.

    Args:
        path: the state file.
        identity: plain data that must be equal for a state to be resumed.
    """

    def __init__(self, path: str | Path, identity: Mapping[str, Any]) -> None:
        self.path = Path(path)
        self.identity = json.loads(json.dumps(identity, sort_keys=True))

    def load(self, model: nn.Module, optimizer: torch.optim.Optimizer, defense: Any | None) -> Progress | None:
        """Restore a saved run into ``model``, ``optimizer`` and ``defense``; None when there is none to resume.

        Raises:
            ArtifactError: the file is unreadable, was written for another identity (the message names
                the file and the first keys that differ), or lacks or garbles a part it must hold.
        """
        if not self.path.is_file():
            return None
        try:
            payload = torch.load(self.path, map_location="cpu", weights_only=True)
            identity = payload["identity"]
        except Exception as exc:  # noqa: BLE001 - an unreadable state file is named, never trusted
            raise ArtifactError(f"{self.path}: not a readable training state ({type(exc).__name__}); "
                                "delete it to start the run over") from None
        if identity != self.identity:
            differing = ", ".join(_differences(identity, self.identity)[:3])
            raise ArtifactError(f"{self.path}: a training state of other params or inputs (differs in {differing}); "
                                "delete it to start over, or restore what changed to resume it")
        try:
            model.load_state_dict(payload["model"])
            optimizer.load_state_dict(payload["optimizer"])
            if defense is not None:
                defense.load_state_dict(payload["defense"])
            return Progress.from_dict(payload["progress"])
        except (KeyError, TypeError, ValueError, AttributeError, RuntimeError) as exc:
            # a state this code wrote holds every part: one missing or of another shape was damaged or edited
            problem = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ArtifactError(f"{self.path}: a damaged training state ({type(exc).__name__}: {problem}); "
                                "delete it to start the run over") from None

    def save(self, model: nn.Module, optimizer: torch.optim.Optimizer, defense: Any | None, progress: Progress) -> None:
        """Write the state atomically (a kill or a full disk during the write leaves the previous one).

        Raises:
            ArtifactError: the state cannot be written (a full disk); training stops there, named.
        """
        payload = {
            "identity": self.identity,
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "defense": defense.state_dict() if defense is not None else {},
            "progress": progress.as_dict(),
        }
        save_torch(self.path, payload)

    def remove(self) -> None:
        """The run completed: its state is no longer needed."""
        self.path.unlink(missing_ok=True)

    def resume(self, model: nn.Module, optimizer: torch.optim.Optimizer, defense: Any | None) -> dict[str, Any]:
        """``fit``'s arguments that continue from this state (if there is one) and keep it saved as training goes."""
        return {
            "resume": self.load(model, optimizer, defense),
            "on_checkpoint": lambda progress: self.save(model, optimizer, defense, progress),
        }


def _differences(left: Any, right: Any, prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between two nested mappings."""
    if isinstance(left, dict) and isinstance(right, dict):
        keys = sorted(set(left) | set(right))
        return [d for k in keys for d in _differences(left.get(k), right.get(k), f"{prefix}{k}.")]
    return [] if left == right else [prefix.rstrip(".") or "(all)"]

