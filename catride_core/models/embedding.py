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


def image_batches(images: Tensor | Dataset, batch_size: int, num_workers: int = 0, pin_memory: bool = False
                  ) -> Iterator[Tensor]:
    """The images of a tensor or of a Dataset of (image, label) items, ``batch_size`` at a time, in order.

    A Dataset is read through a DataLoader with ``num_workers`` workers and,
    for a CUDA device, pinned host memory (``pin_memory``), so decoding and the
    copy to the GPU overlap with the computation.
    """
    if isinstance(images, Tensor):
        return (images[start : start + batch_size] for start in range(0, len(images), batch_size))
    loader = DataLoader(images, batch_size=batch_size, num_workers=num_workers, pin_memory=pin_memory)
    return (batch for batch, _ in loader)


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
        num_workers: DataLoader workers, for a Dataset (pinned memory on a CUDA ``device``).

    Shape:
        images: (N, C, H, W) -> (N, D) on ``device``
    """
    if batch_size is None:
        if not isinstance(images, Tensor):
            raise ValueError("embed: a Dataset needs a batch_size")
        batch_size = max(len(images), 1)
    device = None if device is None else torch.device(device)
    pinned = device is not None and device.type == "cuda"
    with eval_mode(model):
        chunks = [model(batch if device is None else batch.to(device, non_blocking=pinned))
                  for batch in image_batches(images, batch_size, num_workers, pinned)]
    return torch.cat(chunks)
