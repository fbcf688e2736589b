"""ResNet-18/50 embedding networks for 224 px data (docs/method.md section 2).

A torchvision backbone built with ``weights=None`` (torchvision never
downloads), its final fc replaced by a linear layer to D, ImageNet mean/std
normalisation as the first layer, and BatchNorm frozen in eval mode during
training, as in the reference code: the running statistics keep their
ImageNet values (the affine scale and shift still train). ImageNet weights
come from a local torchvision-style state_dict file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import torch
from torch import Tensor, nn

from catride_core.errors import ArtifactError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

ResNetArch = Literal["resnet18", "resnet50"]


class Normalize(nn.Module):
    """(x - mean) / std per channel, so callers (and attacks) work in [0, 1] pixel space.

    Shape:
        input: (B, 3, H, W) -> same
    """

    def __init__(self, mean: tuple[float, ...], std: tuple[float, ...]) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std).view(1, -1, 1, 1))

    def forward(self, images: Tensor) -> Tensor:
        return (images - self.mean) / self.std


class SpatialMean(nn.Module):
    """Global average pooling as a plain mean over H and W: ``AdaptiveAvgPool2d((1, 1))``'s values, with a
    deterministic CUDA backward whatever torch dispatches adaptive pooling to (its general CUDA backward has
    none, which the strict deterministic mode refuses; torch 2.14 turns the 1x1 case into a mean itself).

    Shape:
        input: (B, C, H, W) -> (B, C, 1, 1)
    """

    def forward(self, features: Tensor) -> Tensor:
        return features.mean(dim=(2, 3), keepdim=True)


class ResNetEmbedding(nn.Module):
    """ImageNet normalisation -> torchvision ResNet -> linear to ``embedding_dim``.

    Args:
        arch: ``resnet18`` or ``resnet50``.
        embedding_dim: D.
        weights: a local state_dict file of the plain torchvision ResNet
            (``fc.*`` keys are dropped); None = random initialisation.

    Shape:
        input: (B, 3, H, W) in [0, 1]; output: (B, D) unnormalised features
    """

    def __init__(self, arch: ResNetArch, embedding_dim: int, weights: str | Path | None = None) -> None:
        super().__init__()
        # imported here: torchvision takes over a second to import, and only resnets need it
        import torchvision

        constructors = {"resnet18": torchvision.models.resnet18, "resnet50": torchvision.models.resnet50}
        self.normalize = Normalize(IMAGENET_MEAN, IMAGENET_STD)
        self.backbone = constructors[arch](weights=None)
        if weights is not None:
            load_backbone_weights(self.backbone, weights, arch)
        self.backbone.fc = nn.Linear(self.backbone.fc.in_features, embedding_dim)
        self.backbone.avgpool = SpatialMean()
        # channels_last: cuDNN's and oneDNN's convolutions are faster on it (tensor cores on a GPU)
        self.to(memory_format=torch.channels_last)
        #: train BatchNorm with the rest (RobRank's 224 px EST); False, the references' default: frozen
        self.train_batchnorm = False
        self.train()

    def train(self, mode: bool = True) -> ResNetEmbedding:
        """Set train/eval mode, keeping every BatchNorm in eval mode (frozen running statistics) unless ``train_batchnorm``."""
        super().train(mode)
        if not self.train_batchnorm:
            for module in self.modules():
                if isinstance(module, nn.modules.batchnorm._BatchNorm):
                    module.eval()
        return self

    def forward(self, images: Tensor) -> Tensor:
        return self.backbone(self.normalize(images).contiguous(memory_format=torch.channels_last))


def load_backbone_weights(backbone: nn.Module, path: str | Path, arch: str) -> None:
    """Load a torchvision ResNet state_dict file into ``backbone``, ignoring its fc layer.

    ``num_batches_tracked`` buffers may be absent (older torchvision files).

    Raises:
        ArtifactError: naming the file, if it is missing, not a state_dict, or its
            keys or tensor shapes do not match the architecture.
    """
    path = Path(path)
    if not path.is_file():
        raise ArtifactError(f"pretrain.weights: {path}: file does not exist (download the ImageNet weights first)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises pickle, zip and runtime errors alike on a bad file
        raise ArtifactError(f"pretrain.weights: {path}: not a readable torch state_dict file ({exc})") from None
    if not isinstance(state, dict) or not all(isinstance(value, Tensor) for value in state.values()):
        raise ArtifactError(f"pretrain.weights: {path}: expected a state_dict (a mapping of names to tensors)")
    state = {key: value for key, value in state.items() if not key.startswith("fc.")}
    expected = {key: value for key, value in backbone.state_dict().items() if not key.startswith("fc.")}
    missing = [key for key in expected if key not in state and not key.endswith("num_batches_tracked")]
    unexpected = [key for key in state if key not in expected]
    wrong_shape = [
        f"{key} {tuple(state[key].shape)} != {tuple(value.shape)}"
        for key, value in expected.items()
        if key in state and state[key].shape != value.shape
    ]
    problems = [
        f"{label} ({len(keys)}): {', '.join(keys[:4])}{', ...' if len(keys) > 4 else ''}"
        for label, keys in (("missing keys", missing), ("unexpected keys", unexpected), ("wrong shapes", wrong_shape))
        if keys
    ]
    if problems:
        raise ArtifactError(
            f"pretrain.weights: {path}: not a torchvision {arch} state_dict: " + "; ".join(problems)
        )
    backbone.load_state_dict(state, strict=False)
