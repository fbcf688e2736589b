"""Embedding models: an image batch in [0, 1] -> L2-normalised embeddings.

``build_model(arch, embedding_dim, weights)`` is the registry; every model it
returns is an ``Embedder``, whose output rows have unit norm, so every
distance in the project lives on the unit sphere.
"""

from __future__ import annotations

from collections.abc import Callable

import torch.nn.functional as F
from torch import Tensor, nn

from catride_core import names
from catride_core.errors import ParamsError
from catride_core.models.c2f2 import C2F2
from catride_core.models.resnet import ResNetEmbedding


class Embedder(nn.Module):
    """Wraps a feature network and L2-normalises its output.

    Shape:
        input: (B, C, H, W) in [0, 1]; output: (B, D) with unit rows
    """

    def __init__(self, network: nn.Module, arch: str, embedding_dim: int, image_size: int, channels: int) -> None:
        super().__init__()
        self.network = network
        self.arch = arch
        self.embedding_dim = embedding_dim
        self.image_size = image_size
        self.channels = channels

    def forward(self, images: Tensor) -> Tensor:
        return F.normalize(self.network(images), dim=-1)


def _c2f2(embedding_dim: int, weights: str | None) -> Embedder:
    if weights is not None:
        raise ParamsError("pretrain.weights: c2f2 has no pretrained weights; use null")
    return Embedder(C2F2(embedding_dim), "c2f2", embedding_dim, image_size=28, channels=1)


def _resnet18(embedding_dim: int, weights: str | None) -> Embedder:
    network = ResNetEmbedding("resnet18", embedding_dim, weights)
    return Embedder(network, "resnet18", embedding_dim, image_size=224, channels=3)


def _resnet50(embedding_dim: int, weights: str | None) -> Embedder:
    network = ResNetEmbedding("resnet50", embedding_dim, weights)
    return Embedder(network, "resnet50", embedding_dim, image_size=224, channels=3)


ARCHITECTURES: dict[str, Callable[[int, str | None], Embedder]] = {
    "c2f2": _c2f2,
    "resnet18": _resnet18,
    "resnet50": _resnet50,
}
if tuple(ARCHITECTURES) != names.ARCHITECTURES:
    raise ImportError(f"architectures {tuple(ARCHITECTURES)} do not match names.ARCHITECTURES {names.ARCHITECTURES}")


def input_mismatch(model: Embedder, image_size: int, channels: int) -> str | None:
    """Why ``model`` cannot take images of ``image_size`` px and ``channels`` channels, or None if it can."""
    if (model.image_size, model.channels) == (image_size, channels):
        return None
    return (
        f"{model.arch} takes {model.channels}-channel {model.image_size} px images, "
        f"the prepared data holds {channels}-channel {image_size} px images"
    )


def set_batchnorm_training(model: nn.Module, train: bool) -> None:
    """Train BatchNorm layers with the rest of ``model`` (``train``) or keep them frozen, the default.

    Only resnets have BatchNorm; on c2f2 this changes nothing. The model keeps
    its current mode; the choice applies from its next ``train()`` call.
    """
    for module in model.modules():
        if isinstance(module, ResNetEmbedding):
            module.train_batchnorm = train
    model.train(model.training)


def trains_batchnorm(model: nn.Module) -> bool:
    """Whether ``model`` has BatchNorm layers set to train (their running statistics change in training)."""
    return any(isinstance(module, ResNetEmbedding) and module.train_batchnorm for module in model.modules())


def build_model(arch: str, embedding_dim: int, weights: str | None = None) -> Embedder:
    """A freshly initialised (or ImageNet-initialised) embedding model.

    Initialisation draws from torch's global RNG: seed it first.
    """
    if arch not in ARCHITECTURES:
        raise ValueError(f"pretrain.arch: unknown architecture {arch!r}; available: {sorted(ARCHITECTURES)}")
    return ARCHITECTURES[arch](embedding_dim, weights)
