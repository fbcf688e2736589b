"""Where and how reproducibly the computation runs: device choice, seeding, progress bars."""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any, TypeVar

import numpy as np
import torch
from tqdm.auto import tqdm

from catride_core.errors import ParamsError

T = TypeVar("T")


def resolve_device(name: str) -> torch.device:
    """``auto`` picks CUDA when present, else CPU; ``cuda`` without a GPU is an error."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise ParamsError("base.device: 'cuda' asked for, but no CUDA device is available; use auto or cpu")
    if name == "cuda":
        # every batch of a stage has one shape: let cuDNN pick its fastest (deterministic) kernels once
        torch.backends.cudnn.benchmark = True
    return torch.device(name)


def derive_seed(*parts: int) -> int:
    """A 63-bit seed from a tuple (base seed, epoch, ...), so streams never overlap."""
    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(2, np.uint64)[0] >> np.uint64(1))


def seeded_generator(*parts: int) -> torch.Generator:
    """A CPU generator seeded from ``derive_seed(*parts)``."""
    return torch.Generator().manual_seed(derive_seed(*parts))


def seed_everything(seed: int, device: torch.device | None = None) -> None:
    """Seed torch's global RNG (model initialisation draws from it) and ask for deterministic kernels.

    On the CPU every kernel the pipeline uses has a deterministic version, so
    one that has none is an error. On CUDA some backward kernels have none
    (the ResNets' adaptive average pooling), so there it is a warning, and
    cuBLAS gets the fixed workspace its deterministic mode needs.
    """
    torch.manual_seed(seed)
    if device is not None and device.type == "cuda":
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
    else:
        torch.use_deterministic_algorithms(True)


def progress_bar(iterable: Iterable[T] | None = None, *, enabled: bool, **options: Any) -> tqdm:
    """The project's one progress bar (tqdm on stderr); ``enabled=False`` draws nothing."""
    return tqdm(iterable, disable=not enabled, **options)
