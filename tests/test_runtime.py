"""Where a stage runs and how reproducibly: the device line, strict ``cuda``, CUDA settings, the runtime record.

No GPU here: CUDA's answers are stood in for with monkeypatch where a test needs them.
"""

import types
import warnings

import pytest
import torch

from catride_core.errors import ParamsError
from catride_core.models.resnet import ResNetEmbedding, SpatialMean
from catride_core.runtime import (
    CUDA_NONDETERMINISTIC_EXEMPTIONS,
    configure_backends,
    cuda_status,
    device_line,
    resolve_device,
    runtime_record,
    seed_everything,
)


@pytest.fixture
def old_driver(monkeypatch):
    """torch as it answers on a machine whose NVIDIA driver is too old for its CUDA build."""

    def is_available():
        warnings.warn("CUDA initialization: The NVIDIA driver on your system is too old (found version 11040). "
                      "Please update your GPU driver", UserWarning, stacklevel=2)
        return False

    monkeypatch.setattr(torch.cuda, "is_available", is_available)


def test_cuda_asked_for_where_the_driver_is_too_old_is_an_error_with_torchs_reason(old_driver):
    usable, reason = cuda_status()
    assert not usable and reason.startswith("CUDA initialization: The NVIDIA driver on your system is too old")
    with pytest.raises(ParamsError, match="base.device: 'cuda' asked for, but CUDA is not usable here: CUDA "
                                          "initialization: The NVIDIA driver on your system is too old"):
        resolve_device("cuda")


def test_auto_falls_back_to_the_cpu_and_says_why(old_driver):
    assert resolve_device("auto") == torch.device("cpu")
    line = device_line(torch.device("cpu"), "auto")
    assert line.startswith(f"device: cpu ({torch.get_num_threads()} threads, ")
    assert "base.device auto: CUDA initialization: The NVIDIA driver on your system is too old" in line
    # asked for the CPU, nothing about CUDA
    assert device_line(torch.device("cpu"), "cpu") == (
        f"device: cpu ({torch.get_num_threads()} threads, {torch.backends.cpu.get_cpu_capability()})")


@pytest.fixture
def restored_backends():
    yield
    configure_backends(False)


@pytest.mark.usefixtures("restored_backends")
def test_cuda_settings_are_set_explicitly_both_ways():
    configure_backends(True)
    assert torch.backends.cudnn.benchmark
    assert torch.backends.cuda.matmul.fp32_precision == "tf32" and torch.backends.cudnn.conv.fp32_precision == "tf32"
    configure_backends(False)  # the default: deterministic IEEE fp32
    assert not torch.backends.cudnn.benchmark
    assert torch.backends.cuda.matmul.fp32_precision == "ieee" and torch.backends.cudnn.conv.fp32_precision == "ieee"


def test_deterministic_algorithms_are_strict_on_cuda_too():
    seed_everything(0, torch.device("cuda"))  # sets flags only: no GPU needed
    assert torch.are_deterministic_algorithms_enabled()
    assert not torch.is_deterministic_algorithms_warn_only_enabled()
    assert CUDA_NONDETERMINISTIC_EXEMPTIONS == {}
    seed_everything(0)


@pytest.mark.usefixtures("restored_backends")
def test_the_runtime_record_names_the_gpu_and_its_settings(monkeypatch):
    properties = types.SimpleNamespace(name="NVIDIA H200", major=9, minor=0, total_memory=150 * 2**30)
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda index: properties)
    monkeypatch.setattr(torch.backends.cudnn, "version", lambda: 91002)
    configure_backends(False)
    record = runtime_record(torch.device("cuda", 0))
    assert record["cuda"] | {"driver": None} == {
        "gpu": "NVIDIA H200", "capability": "9.0", "memory_gib": 150.0, "driver": None, "cuda": torch.version.cuda,
        "cudnn": 91002, "matmul_fp32_precision": "ieee", "conv_fp32_precision": "ieee", "cudnn_benchmark": False,
        "deterministic": torch.are_deterministic_algorithms_enabled(),
    }
    line = device_line(torch.device("cuda", 0), "auto")
    assert line.startswith("device: cuda:0 NVIDIA H200 (compute 9.0, 150.0 GiB), driver ")
    assert line.endswith("; IEEE fp32 (no TF32), cudnn.benchmark off, deterministic on")
    # on the CPU the record is what it always was, so CPU checkpoints keep their bytes
    assert set(runtime_record(torch.device("cpu"))) == {"torch", "threads", "cpu_capability"}


def test_resnet_pooling_is_a_plain_mean_with_adaptive_poolings_values():
    model = ResNetEmbedding("resnet18", 8).eval()
    assert isinstance(model.backbone.avgpool, SpatialMean)
    assert not any(isinstance(m, torch.nn.AdaptiveAvgPool2d) for m in model.modules())
    features = torch.randn(2, 512, 7, 7, generator=torch.Generator().manual_seed(0))
    assert torch.equal(SpatialMean()(features), torch.nn.AdaptiveAvgPool2d((1, 1))(features))
