"""Several processes of one stage under torchrun: who this process is, its shard of the work, gathering results.

``torchrun --nproc_per_node N stages/<stage>.py ...`` starts N copies of a stage
with ``WORLD_SIZE``, ``RANK`` and ``LOCAL_RANK`` set; ``distributed`` joins them
in one process group (gloo on the CPU, NCCL on CUDA, one GPU per process).
Without torchrun (``WORLD_SIZE`` unset or 1) a stage is one process, no process
group is made, and every helper here is the identity.

Work is split in contiguous shards whose boundaries fall on multiples of the
batch size, so each process runs exactly the batches one process would run,
and the gathered results are those of one process, byte for byte (given the
same number of CPU threads per process: float kernels round by it).

Training shares each global SPC-2 batch instead (``pair_shares``): every
process holds the whole batch and computes on its contiguous share of pairs,
and ``gather_shares`` puts the shares back together, with gradient, so that a
loss of the gathered tensors is the loss of the global batch.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.utils.data import Dataset, Subset

from catride_core.models.embedding import embed

#: dtypes ``World.gather`` can send; a process with no rows takes the others' dtype from this table
_DTYPES = (torch.float32, torch.float64, torch.float16, torch.bfloat16, torch.int64, torch.int32, torch.uint8)
_MAX_DIMS = 8


@dataclass(frozen=True)
class World:
    """This process's place among the processes of a stage.

    Attributes:
        rank: this process, 0 .. size - 1; rank 0 writes the outputs.
        size: the number of processes.
        device: where tensors are exchanged (the CPU for gloo, this process's GPU for NCCL).
    """

    rank: int = 0
    size: int = 1
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def is_main(self) -> bool:
        """Whether this process writes the outputs."""
        return self.rank == 0

    def shard(self, n: int, batch_size: int) -> range:
        """This process's contiguous share of items ``0 .. n - 1``: whole batches of ``batch_size``.

        The ``ceil(n / batch_size)`` batches are dealt out as evenly as possible,
        in order, so only the last shard can end in a short batch, and a
        process may get none when there are fewer batches than processes.
        """
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        n_batches = -(-n // batch_size)
        first = self.rank * n_batches // self.size
        last = (self.rank + 1) * n_batches // self.size
        return range(min(first * batch_size, n), min(last * batch_size, n))

    def gather(self, rows: Tensor) -> Tensor:
        """Every process's ``rows``, concatenated in rank order, on every process (on ``rows``' device).

        Shards may differ in length. A process with no rows may pass any empty
        tensor: it takes the trailing shape and dtype of the others.

        Shape:
            rows: (n_r, ...) on process r -> (sum of n_r, ...)

        Raises:
            ValueError: processes with rows disagree on their trailing shape or dtype.
        """
        if self.size == 1:
            return rows
        local = rows.to(self.device)
        if local.ndim - 1 > _MAX_DIMS or local.dtype not in _DTYPES:
            raise ValueError(f"cannot gather a {local.dtype} tensor of shape {tuple(local.shape)}")
        header = torch.zeros(3 + _MAX_DIMS, dtype=torch.int64, device=self.device)
        header[:3] = torch.tensor([len(local), _DTYPES.index(local.dtype), local.ndim - 1])
        header[3 : 3 + local.ndim - 1] = torch.tensor(local.shape[1:], dtype=torch.int64)
        headers = [torch.empty_like(header) for _ in range(self.size)]
        dist.all_gather(headers, header)
        layouts = [(int(h[0]), int(h[1]), tuple(h[3 : 3 + int(h[2])].tolist())) for h in headers]
        counts = [count for count, _, _ in layouts]
        shapes = {(dtype, trailing) for count, dtype, trailing in layouts if count > 0}
        if not shapes:
            return rows
        if len(shapes) > 1:
            raise ValueError(f"processes gather rows of different dtypes or shapes: {sorted(shapes)}")
        dtype_index, trailing = shapes.pop()
        padded = torch.zeros((max(counts), *trailing), dtype=_DTYPES[dtype_index], device=self.device)
        if len(local):
            padded[: len(local)] = local
        parts = [torch.empty_like(padded) for _ in range(self.size)]
        dist.all_gather(parts, padded)
        return torch.cat([part[:count] for part, count in zip(parts, counts)]).to(rows.device)

    def pair_shares(self, pairs: int) -> list[range]:
        """Every process's contiguous share of a batch's ``pairs`` SPC-2 pairs (indices 0 .. pairs - 1), in rank order.

        Shares differ by at most one pair, the later ranks holding the larger
        ones; when ``pairs`` is a multiple of the number of processes they are equal.
        """
        return [range(rank * pairs // self.size, (rank + 1) * pairs // self.size) for rank in range(self.size)]

    def gather_shares(self, rows: Tensor, counts: Sequence[int]) -> Tensor:
        """Every process's ``rows`` (``counts[r]`` of them on process r), concatenated in rank order, with gradient.

        The result is the same tensor on every process, so a loss of it is too.
        Its backward sums every process's gradient of a share into the rows of
        the process that owns the share: when every process computes the same
        loss of the gathered rows, each gets its rows' gradient times the number
        of processes, which DistributedDataParallel's averaging of the parameter
        gradients divides out again (and which sign-PGD does not see). One process: ``rows`` itself.

        Shape:
            rows: (counts[rank], ...) -> (sum(counts), ...)
        """
        if self.size == 1:
            return rows
        padding = rows.new_zeros((max(counts) - len(rows), *rows.shape[1:]))
        parts = _AllGather.apply(torch.cat([rows, padding]).to(self.device), self.rank, self.size)
        return torch.cat([part[:count] for part, count in zip(parts, counts)]).to(rows.device)

    def diverged(self, model: nn.Module) -> list[str]:
        """The names of ``model``'s parameters and buffers whose values differ from rank 0's (on every process).

        A collective: every process must call it. One process: none.
        """
        if self.size == 1:
            return []
        differing = []
        for name, value in (*model.named_parameters(), *model.named_buffers()):
            reference = value.detach().to(self.device, copy=True)
            dist.broadcast(reference, 0)
            if not torch.equal(reference, value.detach().to(self.device)):
                differing.append(name)
        # every process learns every process's answer, so that all of them fail together or none
        flags = torch.tensor([float(bool(differing))], device=self.device)
        dist.all_reduce(flags)
        if float(flags) and not differing:
            return ["(on another process)"]
        return differing

    def embed(
        self, model: nn.Module, images: Tensor | Dataset, batch_size: int, device: torch.device, num_workers: int = 0
    ) -> Tensor:
        """``models.embedding.embed`` of all ``images``, each process embedding its shard, on every process.

        Shape:
            images: (N, C, H, W) or a Dataset of N (image, label) items -> (N, D) on ``device``
        """
        shard = self.shard(len(images), batch_size)
        if not len(shard):
            return self.gather(torch.empty(0, device=device))
        part = images[shard.start : shard.stop] if isinstance(images, Tensor) else Subset(images, shard)
        return self.gather(embed(model, part, batch_size=batch_size, device=device, num_workers=num_workers))


class _AllGather(torch.autograd.Function):
    """``dist.all_gather`` of equal-shaped tensors with a backward: the sum over processes of the gradient of
    this process's part (an all-reduce, which every backend has)."""

    @staticmethod
    def forward(ctx: Any, rows: Tensor, rank: int, size: int) -> tuple[Tensor, ...]:
        ctx.rank = rank
        parts = [torch.empty_like(rows) for _ in range(size)]
        dist.all_gather(parts, rows.contiguous())
        return tuple(parts)

    @staticmethod
    def backward(ctx: Any, *gradients: Tensor) -> tuple[Tensor, None, None]:
        summed = torch.stack(gradients)
        dist.all_reduce(summed)
        return summed[ctx.rank], None, None


@contextmanager
def distributed(device: torch.device) -> Iterator[World]:
    """The stage's processes joined for the block: a process group under torchrun, one process otherwise.

    Under torchrun (``WORLD_SIZE`` > 1) this makes the process group (NCCL when
    ``device`` is CUDA, each process on GPU ``LOCAL_RANK``; gloo otherwise)
    and destroys it when the block ends, also on an exception.
    """
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size <= 1:
        yield World()
        return
    if device.type == "cuda":
        torch.cuda.set_device(int(os.environ["LOCAL_RANK"]))
        exchange = torch.device("cuda", torch.cuda.current_device())
    else:
        exchange = torch.device("cpu")
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    try:
        yield World(dist.get_rank(), dist.get_world_size(), exchange)
    finally:
        dist.destroy_process_group()
