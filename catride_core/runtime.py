"""Where and how reproducibly the computation runs: device choice, CUDA settings, seeding, progress bars.

On CUDA the pipeline is deterministic fp32 by default: cuDNN does not pick
kernels by timing (``cudnn.benchmark`` off), float32 matmuls and convolutions
run in IEEE fp32 (no TF32), and ``torch.use_deterministic_algorithms`` is
strict, as on the CPU. ``base.cuda_fast`` trades that for speed (benchmark on,
TF32 on). Every checkpoint records what its floats depend on
(``runtime_record``), and every stage prints its device (``device_line``).
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch
from tqdm.auto import tqdm

from catride_core.errors import ParamsError

T = TypeVar("T")


#: CUDA ops that have no deterministic kernel and that the pipeline still needs, each with why (none so far:
#: the ResNets' global pooling is a plain mean, not the adaptive pooling whose general CUDA backward has none).
#: ``benchmarks/gpu.py`` runs every training step and attack under the strict mode on a lent GPU to keep this true.
CUDA_NONDETERMINISTIC_EXEMPTIONS: dict[str, str] = {}


def cuda_status() -> tuple[bool, str]:
    """Whether CUDA is usable here, and if not, why (torch's own words where it gives them)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        available = torch.cuda.is_available()
    if available:
        return True, ""
    if not torch.backends.cuda.is_built():
        return False, f"this torch build ({torch.__version__}) has no CUDA support"
    said = [str(warning.message).splitlines()[0] for warning in caught if "CUDA" in str(warning.message)]
    if said:
        # torch's own reason, e.g. "CUDA initialization: The NVIDIA driver on your system is too old"
        return False, said[0]
    return False, f"no NVIDIA GPU or driver found (torch {torch.__version__} needs a driver for CUDA {torch.version.cuda})"


def resolve_device(name: str) -> torch.device:
    """``auto`` picks CUDA when usable, else CPU; ``cuda`` where CUDA is not usable is an error that says why."""
    usable, reason = cuda_status()
    if name == "auto":
        name = "cuda" if usable else "cpu"
    if name == "cuda" and not usable:
        raise ParamsError(f"base.device: 'cuda' asked for, but CUDA is not usable here: {reason}; "
                          "use auto or cpu, or install a torch build that matches this machine's driver")
    return torch.device(name)


def configure_backends(fast: bool) -> None:
    """Deterministic IEEE fp32 on CUDA (``fast`` False), or cuDNN autotuning and TF32 (``fast`` True).

    Set explicitly either way, whatever torch's defaults (cuDNN convolutions
    default to TF32). Harmless on the CPU, where none of them applies.
    """
    precision = "tf32" if fast else "ieee"
    torch.backends.cudnn.benchmark = fast
    torch.backends.cuda.matmul.fp32_precision = precision
    torch.backends.cudnn.conv.fp32_precision = precision
    torch.backends.cudnn.rnn.fp32_precision = precision


def _driver_version() -> str | None:
    """The NVIDIA kernel driver's version, from /proc (no subprocess), or None where it cannot be read."""
    try:
        line = Path("/proc/driver/nvidia/version").read_text().splitlines()[0]
    except (OSError, IndexError):
        return None
    words = [word for word in line.split() if word[:1].isdigit() and "." in word]
    return words[0] if words else None


def runtime_record(device: torch.device) -> dict[str, Any]:
    """What float results depend on beyond the params: torch, threads, CPU capability and, on CUDA, the GPU.

    On CUDA: the GPU's name and compute capability, the driver, CUDA and
    cuDNN versions, and the TF32, cuDNN-benchmark and deterministic settings.
    """
    record: dict[str, Any] = {
        "torch": str(torch.__version__),
        "threads": torch.get_num_threads(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
    }
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        properties = torch.cuda.get_device_properties(index)
        record["cuda"] = {
            "gpu": properties.name,
            "capability": f"{properties.major}.{properties.minor}",
            "memory_gib": round(properties.total_memory / 2**30, 1),
            "driver": _driver_version(),
            "cuda": torch.version.cuda,
            "cudnn": torch.backends.cudnn.version(),
            "matmul_fp32_precision": torch.backends.cuda.matmul.fp32_precision,
            "conv_fp32_precision": torch.backends.cudnn.conv.fp32_precision,
            "cudnn_benchmark": torch.backends.cudnn.benchmark,
            "deterministic": torch.are_deterministic_algorithms_enabled(),
        }
    return record


def device_line(device: torch.device, requested: str) -> str:
    """The one line every stage prints about where it runs (``base.device`` ``requested``)."""
    if device.type != "cuda":
        line = f"device: cpu ({torch.get_num_threads()} threads, {torch.backends.cpu.get_cpu_capability()})"
        if requested == "auto":
            line += f"; base.device auto: {cuda_status()[1]}"
        return line
    cuda = runtime_record(device)["cuda"]
    tf32 = "TF32" if cuda["conv_fp32_precision"] == "tf32" else "IEEE fp32 (no TF32)"
    return (f"device: {device} {cuda['gpu']} (compute {cuda['capability']}, {cuda['memory_gib']} GiB), "
            f"driver {cuda['driver'] or 'unknown'}, CUDA {cuda['cuda']}, cuDNN {cuda['cudnn']}; {tf32}, "
            f"cudnn.benchmark {'on' if cuda['cudnn_benchmark'] else 'off'}, "
            f"deterministic {'on' if cuda['deterministic'] else 'off'}")


def derive_seed(*parts: int) -> int:
    """A 63-bit seed from a tuple (base seed, epoch, ...), so streams never overlap."""
    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(2, np.uint64)[0] >> np.uint64(1))


def seeded_generator(*parts: int) -> torch.Generator:
    """A CPU generator seeded from ``derive_seed(*parts)``."""
    return torch.Generator().manual_seed(derive_seed(*parts))


def seed_everything(seed: int, device: torch.device | None = None) -> None:
    """Seed torch's global RNG (model initialisation draws from it) and ask for deterministic kernels, strictly.

    A kernel without a deterministic version is an error, on the CPU and on
    CUDA alike (``CUDA_NONDETERMINISTIC_EXEMPTIONS`` lists the ones the
    pipeline would need to exempt: none). On CUDA, cuBLAS gets the fixed
    workspace its deterministic mode needs.
    """
    torch.manual_seed(seed)
    if device is not None and device.type == "cuda":
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(True)


def progress_bar(iterable: Iterable[T] | None = None, *, enabled: bool, **options: Any) -> tqdm:
    """The project's one progress bar (tqdm on stderr); ``enabled=False`` draws nothing."""
    return tqdm(iterable, disable=not enabled, **options)
