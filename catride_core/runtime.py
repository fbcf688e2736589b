"""Where and how reproducibly the computation runs: device choice, seeding, progress bars."""

from __future__ import annotations

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


def seed_everything(seed: int) -> None:
    """Seed torch's global RNG (model initialisation draws from it) and make CPU kernels deterministic."""
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True)


def progress_bar(iterable: Iterable[T] | None = None, *, enabled: bool, **options: Any) -> tqdm:
    """The project's one progress bar (tqdm on stderr); ``enabled=False`` draws nothing."""
    return tqdm(iterable, disable=not enabled, **options)
