"""Running a model for its embeddings: eval mode (restored afterwards) and the one embedding helper."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset


@contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Put every submodule in eval mode and give each its own previous mode back.

    Restoring module by module (not ``model.train(previous)``) keeps a frozen
    BatchNorm of a model in training mode frozen. Restores on exceptions too.
    """
    modes = [(module, module.training) for module in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        for module, training in modes:
            module.training = training


@torch.no_grad()
def embed(
    model: nn.Module,
    images: Tensor | Dataset,
    batch_size: int | None = None,
    device: torch.device | str | None = None,
    num_workers: int = 0,
) -> Tensor:
    """Embeddings of images, in eval mode (each submodule's mode restored) and without gradient.

    Embeddings computed here are targets and constants (the gallery, the clean
    side of an inner objective, mining), never trained through.

    Args:
        model: images in [0, 1] -> embeddings.
        images: an image tensor, or a Dataset of (image, label) items read
            through a DataLoader with ``num_workers`` workers.
        batch_size: images run at once (default: a tensor at once; required
            for a Dataset).
        device: where the images are sent (default: where they are).
        num_workers: DataLoader workers, for a Dataset.

    Shape:
        images: (N, C, H, W) -> (N, D) on ``device``
    """
    if isinstance(images, Tensor):
        size = batch_size or max(len(images), 1)
        batches: Iterator[Tensor] = (images[start : start + size] for start in range(0, len(images), size))
    else:
        if batch_size is None:
            raise ValueError("embed: a Dataset needs a batch_size")
        batches = (batch for batch, _ in DataLoader(images, batch_size=batch_size, num_workers=num_workers))
    with eval_mode(model):
        chunks = [model(batch if device is None else batch.to(device)) for batch in batches]
    return torch.cat(chunks)
