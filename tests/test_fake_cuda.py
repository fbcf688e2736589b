"""The CUDA path on a fake CUDA device (issue 21): training, attacks, metrics and the gathered objectives.

PyTorch's fake-tensor mode gives a tensor a shape, a dtype and a device but no
data, so on this CPU-only machine every model, batch and gallery below lives on
``cuda`` and the project's own code runs on it: one step of every defense
(c2f2 in fp32 and bf16, ResNet-18, one process and rank 1 of two), ``fit``,
every attack through ``run_attacks``, the target rules, the report's attack
runs, nearest neighbours, the rank metrics, the collapse diagnostics and the
benign evaluation. Fake tensors raise where an operation mixes devices;
``DeviceCheck`` also fails where torch would let a CPU tensor meet a CUDA one
without a word (a CPU index into a CUDA tensor: a copy and a sync each time),
where a generator lives on another device than the numbers it draws, and on an
operation the pipeline's strict deterministic mode refuses on CUDA.

What fake tensors cannot do is stubbed, and nothing else:

- backward: torch's autograd engine wants a real CUDA context even for fake
  tensors (pytorch/pytorch#92627), so ``Tensor.backward`` and
  ``torch.autograd.grad`` of fake tensors run ``backward_by_hand``: it walks the
  graph and calls each node's own backward formula (so the backward kernels run
  on the fake device too), and checks, as the engine does, that every gradient
  reaches its input on that input's device;
- host reads of a fake tensor (``bool``, ``float``, ``int``, ``.item()``,
  ``.tolist()``, ``torch.equal``, ``.numpy()``) have no value to read:
  ``HOST_READS`` lists every one these paths make, by function, with the value
  it is given (the one that passes the check it feeds, or that takes a loop
  through its body); any other read fails, and ``.numpy()`` of a CUDA tensor
  raises torch's TypeError;
- shapes that depend on values (``nonzero``, indexing by a boolean mask,
  ``unique``) are those of every element selected and every value distinct;
- bfloat16 autocast: torch turns CUDA autocast off without a GPU, so its two
  availability checks are patched;
- collectives: ``torch.distributed.all_gather``, ``all_reduce`` and
  ``broadcast`` as if every process held this one's tensor, on CUDA tensors
  only (NCCL);
- faiss, which reads the host's copy of the data that fake tensors lack: NMI
  (``nmi_over_seeds`` gives a fixed value) and the retrieval examples'
  rankings (only their inputs are checked: on the CPU).

Not run here: the DistributedDataParallel wrapper (it needs a process group)
and pinned memory (torch turns pinning off without a GPU).
"""

from __future__ import annotations

import collections
import sys
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
import torch
import torch.distributed as dist
from torch import Tensor
from torch._subclasses.fake_tensor import FakeTensor, FakeTensorMode
from torch.autograd.function import BackwardCFunction
from torch.utils._python_dispatch import TorchDispatchMode, _disable_current_modes
from torch.utils._pytree import tree_flatten

from catride_core import distributed
from catride_core.attacks import examples, runner, sweep, targets
from catride_core.attacks.base import AttackBudget
from catride_core.config import CATrideParams, FinetuneParams, TrideParams
from catride_core.data.prepared import TensorImageDataset
from catride_core.defenses import build_defense, training_miner
from catride_core.distributed import World
from catride_core.models import build_model
from catride_core.names import ATTACK_SCORES, ATTACKS
from catride_core.progress import Progress
from catride_core.retrieval import collapse, evaluation, knn, metrics
from catride_core.training import (
    ONE_PROCESS,
    StepContext,
    fit,
    gather_rows,
    own_rows,
    train_epoch,
)

CUDA = torch.device("cuda", 0)
CPU = torch.device("cpu")
aten = torch.ops.aten

pytestmark = pytest.mark.filterwarnings("ignore:'pin_memory' argument is set as true:UserWarning")

# ------------------------------------------------------------------------------------------------ the device check

#: operations whose job is to move data between devices
MOVES = {aten._to_copy.default, aten.copy_.default, aten._copy_from.default, aten._copy_from_and_resize.default}


class DeviceMix(AssertionError):
    """An operation met tensors on two devices, or drew numbers from a generator on another device."""


class Nondeterministic(AssertionError):
    """An operation on CUDA that ``torch.use_deterministic_algorithms(True)`` refuses (the pipeline's default)."""


def _always(args: tuple, kwargs: dict[str, Any]) -> bool:
    return True


#: operation -> whether these arguments make it one that the strict deterministic mode refuses on CUDA (the list of
#: torch.use_deterministic_algorithms' documentation; runtime.seed_everything exempts none)
NONDETERMINISTIC_ON_CUDA = {
    **dict.fromkeys([
        aten.avg_pool3d_backward, aten._adaptive_avg_pool2d_backward, aten._adaptive_avg_pool3d_backward,
        aten.adaptive_max_pool2d_backward, aten.fractional_max_pool2d_backward, aten.fractional_max_pool3d_backward,
        aten.max_unpool2d, aten.max_unpool3d, aten.upsample_linear1d_backward, aten.upsample_bilinear2d_backward,
        aten.upsample_bicubic2d_backward, aten.upsample_trilinear3d_backward, aten.reflection_pad1d_backward,
        aten.reflection_pad2d_backward, aten.reflection_pad3d_backward, aten.nll_loss_forward,
        aten.nll_loss2d_forward, aten._ctc_loss_backward, aten.put_, aten.put, aten.histc,
        aten.grid_sampler_2d_backward, aten.grid_sampler_3d_backward,
    ], _always),
    aten.median: lambda args, kwargs: len(args) > 1 or "dim" in kwargs,  # with indices
    aten.bincount: lambda args, kwargs: (args[1:2] or [kwargs.get("weights")])[0] is not None,
    aten.scatter_reduce: lambda args, kwargs: (args[4:5] or [kwargs.get("reduce")])[0] == "prod",
    aten._embedding_bag_backward: lambda args, kwargs: args[8] == 2,  # mode max
}


def _tensors(*trees: Any) -> list[Tensor]:
    return [leaf for leaf in tree_flatten(trees)[0] if isinstance(leaf, Tensor)]


def _every_index(mask: Tensor) -> list[Tensor]:
    """``mask.nonzero(as_tuple=True)`` of a mask that is True everywhere: one index tensor per dimension."""
    flat = torch.arange(mask.numel(), device=mask.device)
    indices = []
    for size in reversed(mask.shape):
        indices.append(flat % size)
        flat = flat // size
    return indices[::-1]


class DeviceCheck(TorchDispatchMode):
    """Fails on any operation whose tensors are on two devices, or that the strict deterministic mode refuses on
    CUDA; value-dependent shapes get a fixed answer.

    A CPU scalar (0-dim tensor) may meet any device, as torch allows, and moves
    (``.to``, ``copy_``) cross devices on purpose. ``cuda_dtypes`` collects the
    dtypes of the CUDA tensors operations made.
    """

    def __init__(self) -> None:
        super().__init__()
        self.cuda_dtypes: set[torch.dtype] = set()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        tensors = _tensors(args, kwargs)
        devices = {t.device for t in tensors if t.device.type != "cpu" or t.dim() > 0}
        if func not in MOVES and len(devices) > 1:
            raise DeviceMix(f"{func} on {[(str(t.device), tuple(t.shape)) for t in tensors]}")
        refused = NONDETERMINISTIC_ON_CUDA.get(func.overloadpacket)
        if refused is not None and any(t.device.type == "cuda" for t in tensors) and refused(args, kwargs):
            raise Nondeterministic(f"{func} on CUDA has no deterministic kernel")
        generator = kwargs.get("generator")
        if generator is not None:
            drawn = torch.device(kwargs.get("device") or (tensors[0].device if tensors else "cpu"))
            if drawn.type != generator.device.type:
                raise DeviceMix(f"{func} draws on {drawn} from a generator on {generator.device}")
        if func in (aten._local_scalar_dense.default, aten.equal.default):  # a value read on the host
            return _host_read(args[0], _reader(sys._getframe(1)), bool if func is aten.equal.default else None)
        out = self._run(func, args, kwargs)
        self.cuda_dtypes.update(t.dtype for t in _tensors(out) if t.device.type == "cuda")
        return out

    @staticmethod
    def _run(func, args, kwargs):
        """``func``, where its shape depends on values as if every element were selected and every value distinct."""
        if func is aten.nonzero.default:
            return torch.stack(_every_index(args[0]), 1)
        if func in (aten.index.Tensor, aten.index_put.default, aten.index_put_.default):
            indices = []
            for index in args[1]:
                masked = index is not None and index.dtype == torch.bool
                indices.extend(_every_index(index) if masked else [index])
            return func(args[0], indices, *args[2:], **kwargs)
        if func in (aten._unique2.default, aten.unique_consecutive.default):
            values = args[0].flatten().clone()
            ones = torch.ones(values.shape, dtype=torch.long, device=values.device)
            return values, ones.view(args[0].shape), ones
        return func(*args, **kwargs)


# ------------------------------------------------------------------------------------------------ host reads

CLASSES = 4  # of the test split below: item i is of class i % CLASSES


def _zeros(tensor: Tensor, frame: Any) -> np.ndarray:
    return np.zeros(tuple(tensor.shape), dtype=np.dtype(str(tensor.dtype).removeprefix("torch.")))


def _header(tensor: Tensor, frame: Any) -> int:
    """``World.gather``'s reads of the exchanged headers: what this process's header holds (the fake processes
    all send its rows) at the position read."""
    local = frame.f_locals["local"]
    return [len(local), distributed._DTYPES.index(local.dtype), local.ndim - 1, *local.shape[1:]][
        tensor.storage_offset()]


def _labels(tensor: Tensor, frame: Any) -> np.ndarray:
    """The test split's labels, read for its SPC-2 batches: item i of class i % CLASSES."""
    return np.arange(len(tensor)) % CLASSES


def _sampled(tensor: Tensor, frame: Any) -> int:
    """``SPC2Sampler``'s batch indices: its own (numpy) pairs, at the position read."""
    return int(np.stack([frame.f_locals["anchors"], frame.f_locals["partners"]], 1).reshape(-1)[
        tensor.storage_offset()])


#: (module, function) -> what its host reads of fake tensors give: one value (a bool, float or int as the tensor's
#: dtype is), a dict by that type, or a function of (tensor, the reading function's frame)
HOST_READS: dict[tuple[str, str], Any] = {
    # every anchor of the batch has an other-label item to be its negative
    ("catride_core.losses.miners", "mine_triplets"): True,
    # a finite loss and statistics: the step goes on
    ("catride_core.training", "check_finite"): 0.5,
    ("catride_core.training", "train_epoch"): 0.5,
    ("catride_core.training", "fit"): _labels,
    ("catride_core.defenses.base", "train_loss"): 0.5,
    # Adam's step count (torch keeps it on the CPU)
    ("torch.optim.optimizer", "_get_value"): 1,
    # a DataLoader's base seed (for its workers: none here)
    ("torch.utils.data.dataloader", "__init__"): 0,
    # above every stop_below: PGD takes its steps (HM's stop_change_below stops it after one: the loss is unchanged)
    ("catride_core.attacks.pgd", "pgd"): 0.5,
    # the clean embeddings are finite; the adversarial images hold no NaN, lie in [0, 0], moved by 0
    ("catride_core.attacks.pgd", "check_inputs"): True,
    ("catride_core.attacks.pgd", "check_adversarial"): {bool: False, float: 0.0},
    # every attacked item has gallery items of another label (and the reference rule reads each query's index)
    ("catride_core.attacks.targets", "nearest_other_label_targets"): False,
    ("catride_core.attacks.targets", "reference_other_label_targets"): {bool: True, int: 1},
    # the per-query scores, back on the host
    ("catride_core.attacks.runner", "_attack_queries"): _zeros,
    # the stage's Dataset reads each label on the host
    ("catride_core.data.prepared", "__getitem__"): 1,
    ("catride_core.data.sampler", "__iter__"): _sampled,
    # ranking: shapes match, excluded indices in range, finite embeddings; then counting passes over the gallery
    ("catride_core.retrieval.metrics", "_check_inputs"): True,
    ("catride_core.retrieval.metrics", "rank_metrics"): 0,  # relevant items in a block: few (the counting path)
    ("catride_core.retrieval.metrics", "_sorted_relevant"): 2,  # relevant items per query, kept items per query
    ("catride_core.retrieval.metrics", "step"): False,  # _squared_bounds: no bound moves another float
    ("catride_core.retrieval.metrics", "_rows_per_column"): lambda tensor, frame: len(frame.f_locals["n_relevant"]),
    ("catride_core.retrieval.metrics", "summary_metrics"): {float: 0.5, int: CLASSES},
    ("catride_core.retrieval.metrics", "query_means"): _zeros,
    # the test split's labels, read for the SPC-2 batches; a batch holds two classes; C and the spread
    ("catride_core.retrieval.collapse", "collapse_diagnostics"): {np.ndarray: _labels, bool: False, float: 0.5},
    ("catride_core.retrieval.collapse", "embedding_spread"): 0.5,
    ("catride_core.retrieval.evaluation", "epoch_metrics"): 0.5,
    ("catride_core.distributed", "gather"): _header,
    # the spread order of the report's few attacked images (any items will do: their images hold no data)
    ("catride_core.attacks.sweep", "eps_sweep"): 0,
    ("catride_core.attacks.examples", "attacked_examples"): 0,
    # every process ends training with rank 0's weights
    ("catride_core.distributed", "diverged"): {bool: True, float: 0.0},
}


def _reader(frame: Any) -> Any:
    """The frame of the function that reads: past torch's internals (``Tensor.tolist``, dispatch) and comprehensions."""
    while (frame.f_globals.get("__name__", "").startswith(("torch._", "torch.utils._"))
           or frame.f_code.co_name in ("<dictcomp>", "<listcomp>", "<setcomp>", "<genexpr>")):
        frame = frame.f_back
    return frame


def _host_read(tensor: Tensor, frame: Any, kind: type | None = None) -> Any:
    """The value ``HOST_READS`` gives the read of ``tensor`` in ``frame``'s function (a scalar, or a ``kind`` array)."""
    key = (frame.f_globals.get("__name__"), frame.f_code.co_name)
    if key not in HOST_READS:
        raise AssertionError(f"a host read of a fake tensor that HOST_READS does not stub, in {key[1]} "
                             f"({frame.f_code.co_filename}:{frame.f_lineno})")
    kind = kind or (bool if tensor.dtype == torch.bool else float if tensor.dtype.is_floating_point else int)
    value = HOST_READS[key]
    if isinstance(value, dict):
        value = value[kind]
    return value(tensor, frame) if callable(value) else kind(value)


def _numpy(tensor: Tensor, *args: Any, **kwargs: Any) -> np.ndarray:
    if tensor.device.type != "cpu":
        raise TypeError(f"can't convert {tensor.device} device type tensor to numpy")
    return _host_read(tensor, _reader(sys._getframe(1)), np.ndarray)


# ------------------------------------------------------------------------------------------------ backward


def _apply(node: Any, grads: list[Tensor]) -> tuple[Tensor | None, ...]:
    """A node's backward formula on the gradients of its outputs: one gradient per ``next_functions`` entry."""
    if isinstance(node, BackwardCFunction):  # an autograd.Function: its backward also answers its non-tensor inputs
        out = node.apply(*grads)
        out = out if isinstance(out, tuple) else (out,)
        return out[: len(node.next_functions)]
    out = node(*grads)
    return (out,) if isinstance(out, Tensor) else tuple(out)


def backward_by_hand(roots: list[Tensor], gradients: list[Tensor], inputs: list[Tensor] | None = None) -> list[Tensor]:
    """What the autograd engine does for fake tensors: each node's backward once all its gradients are in.

    Without ``inputs``, gradients accumulate into the ``.grad`` of every leaf
    (``Tensor.backward``); with them, the gradients of those leaves are returned
    and no ``.grad`` is touched (``torch.autograd.grad``).
    """
    waiting: collections.Counter = collections.Counter()
    seen, stack = set(), [root.grad_fn for root in roots]
    while stack:
        node = stack.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        for child, _ in node.next_functions:
            if child is not None:
                waiting[child] += 1
                stack.append(child)
    received: dict[Any, dict[int, Tensor]] = collections.defaultdict(dict)
    for root, gradient in zip(roots, gradients, strict=True):
        received[root.grad_fn][root.output_nr] = gradient
    ready = list(dict.fromkeys(root.grad_fn for root in roots if not waiting[root.grad_fn]))
    found: dict[int, Tensor] = {}
    wanted = None if inputs is None else {id(tensor) for tensor in inputs}
    with torch.no_grad():
        while ready:
            node = ready.pop()
            got = received.pop(node, {})
            grads = [got.get(i, torch.zeros(meta.shape, dtype=meta.dtype, device=meta.device))
                     for i, meta in enumerate(node._input_metadata)]
            if hasattr(node, "variable"):  # AccumulateGrad: a leaf
                leaf = node.variable
                if wanted is None:
                    leaf.grad = grads[0] if leaf.grad is None else leaf.grad + grads[0]
                elif id(leaf) in wanted:
                    found[id(leaf)] = grads[0]
                continue
            for (child, slot), gradient in zip(node.next_functions, _apply(node, grads), strict=True):
                if child is None:
                    continue
                if gradient is not None:
                    meta = child._input_metadata[slot]
                    if gradient.device != meta.device:
                        raise DeviceMix(f"{node.name()} gives {child.name()} a gradient on {gradient.device}, "
                                        f"its input is on {meta.device}")
                    gradient = gradient.sum_to_size(meta.shape).to(meta.dtype)
                    received[child][slot] = gradient + received[child][slot] if slot in received[child] else gradient
                waiting[child] -= 1
                if not waiting[child]:
                    ready.append(child)
    if inputs is None:
        return []
    missing = [i for i, tensor in enumerate(inputs) if id(tensor) not in found]
    if missing:
        raise RuntimeError(f"inputs {missing} were not used in the graph")
    return [found[id(tensor)] for tensor in inputs]


def _stub_backward(monkeypatch: pytest.MonkeyPatch) -> None:
    real_backward, real_grad = torch.Tensor.backward, torch.autograd.grad

    def backward(self, gradient=None, *args, **kwargs):
        if not isinstance(self, FakeTensor):
            return real_backward(self, gradient, *args, **kwargs)
        backward_by_hand([self], [torch.ones_like(self) if gradient is None else gradient])

    def grad(outputs, inputs, grad_outputs=None, *args, **kwargs):
        outputs = [outputs] if isinstance(outputs, Tensor) else list(outputs)
        if not isinstance(outputs[0], FakeTensor):
            return real_grad(outputs, inputs, grad_outputs, *args, **kwargs)
        inputs = [inputs] if isinstance(inputs, Tensor) else list(inputs)
        if any(tensor.grad_fn is not None for tensor in inputs):
            raise NotImplementedError("backward_by_hand takes the gradients of leaves only")
        grad_outputs = grad_outputs or [torch.ones_like(output) for output in outputs]
        grad_outputs = [grad_outputs] if isinstance(grad_outputs, Tensor) else list(grad_outputs)
        return tuple(backward_by_hand(outputs, grad_outputs, inputs))

    monkeypatch.setattr(torch.Tensor, "backward", backward)
    monkeypatch.setattr(torch.autograd, "grad", grad)


# ------------------------------------------------------------------------------------------------ collectives


def _stub_collectives(monkeypatch: pytest.MonkeyPatch, size: int) -> None:
    """NCCL's all_gather and all_reduce among ``size`` processes that all hold this one's tensor."""

    def on_cuda(*tensors: Tensor) -> None:
        if any(tensor.device.type != "cuda" for tensor in tensors):
            raise DeviceMix(f"NCCL exchanges CUDA tensors only, got {[str(t.device) for t in tensors]}")

    def all_gather(parts, tensor, *args, **kwargs):
        on_cuda(tensor, *parts)
        for part in parts:
            part.copy_(tensor)

    def all_reduce(tensor, *args, **kwargs):
        on_cuda(tensor)
        tensor.mul_(size)

    def broadcast(tensor, *args, **kwargs):
        on_cuda(tensor)

    monkeypatch.setattr(dist, "all_gather", all_gather)
    monkeypatch.setattr(dist, "all_reduce", all_reduce)
    monkeypatch.setattr(dist, "broadcast", broadcast)


# ------------------------------------------------------------------------------------------------ fixtures


class FakeCuda:
    """The fake device of one test: its modes, and the real objects it turns into fake CUDA ones."""

    def __init__(self, mode: FakeTensorMode, check: DeviceCheck) -> None:
        self.mode = mode
        self.check = check

    def model(self, arch: str = "c2f2") -> torch.nn.Module:
        """A model (D = 16) built on the CPU and moved to the device, as the stages do: the one call that
        gives the mode real tensors (its parameters and buffers)."""
        with _disable_current_modes():
            torch.manual_seed(0)
            model = build_model(arch, 16)
        self.mode.allow_non_fake_inputs = True
        try:
            return model.to(CUDA)
        finally:
            self.mode.allow_non_fake_inputs = False

    def dataset(self, n: int = 24) -> TensorImageDataset:
        """A test split as the stages read it, of n 28 px images (its tensors made fake CPU tensors); item i of class
        i % CLASSES."""
        with _disable_current_modes():
            dataset = TensorImageDataset(np.zeros((n, 1, 28, 28), dtype=np.uint8), np.arange(n) % CLASSES)
        self.mode.allow_non_fake_inputs = True
        try:
            dataset.images, dataset.labels = dataset.images.clone(), dataset.labels.clone()
        finally:
            self.mode.allow_non_fake_inputs = False
        return dataset


@pytest.fixture
def fake_cuda(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeCuda]:
    """The test body runs in fake-tensor mode under ``DeviceCheck``, with the stubs of the module docstring."""
    monkeypatch.setattr(FakeTensor, "numpy", _numpy)
    _stub_backward(monkeypatch)
    monkeypatch.setattr(torch.cuda.amp.common, "amp_definitely_not_available", lambda: False)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *args, **kwargs: True)
    monkeypatch.setattr(metrics, "nmi_over_seeds", lambda *args, **kwargs: (0.5, None))
    check = DeviceCheck()
    with FakeTensorMode(allow_non_fake_inputs=False) as mode, check:
        yield FakeCuda(mode, check)


def spc2_batch(pairs: int = 4, channels: int = 1, size: int = 28) -> tuple[Tensor, Tensor]:
    """A batch as the DataLoader gives it, on the CPU: 2P images [a1, p1, ...] and their labels."""
    return torch.rand(2 * pairs, channels, size, size), torch.arange(pairs).repeat_interleave(2)


# ------------------------------------------------------------------------------------------------ training

#: the inner PGD of every defense: two steps at full size (no ramp), CA-TRIDE's stop rule as by default
CONFIG = FinetuneParams(eps=0.1, step_size=0.02, steps=2, tride=TrideParams(ramp="off", extra_term=True),
                        ca_tride=CATrideParams(ramp="off", extra_term=True))
LAMBDA = 10.0
#: (defense, global step): each defense once, TRIDE and CA-TRIDE in their CAP (even) and ANP (odd) phases
STEPS = [("none", 0), ("est", 0), ("act", 0), ("hm", 0), ("tride", 0), ("tride", 1), ("ca_tride", 0), ("ca_tride", 1)]


def one_step(fake_cuda: FakeCuda, name: str, step: int, precision: str = "fp32", world: World = ONE_PROCESS,
             arch: str = "c2f2"):
    """``train_epoch`` over one SPC-2 batch, as benchmarks/gpu.py times a step: the step's output, its model
    and optimiser, and where training stands after it."""
    model = fake_cuda.model(arch)
    batch = spc2_batch() if arch == "c2f2" else spc2_batch(2, 3, 224)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    defense = build_defense(name, CONFIG, LAMBDA)
    outputs = []

    def step_fn(*args):
        outputs.append(defense(*args))
        return outputs[-1]

    progress = Progress(epoch=1, step=step)
    train_epoch(model, optimizer, [batch], step_fn, epoch=1, epochs=2, progress=progress, seed=0,
                margin=CONFIG.margin, miner=training_miner(name, CONFIG), device=CUDA, precision=precision, world=world)
    return outputs[0], model, optimizer, progress


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
@pytest.mark.parametrize("name, step", STEPS)
def test_one_training_step_of_every_defense_runs_on_cuda(name, step, precision, fake_cuda):
    out, model, optimizer, progress = one_step(fake_cuda, name, step, precision)
    assert out.loss.device == CUDA and out.loss.dtype == torch.float32 and out.loss.shape == ()
    assert (torch.bfloat16 in fake_cuda.check.cuda_dtypes) == (precision == "bf16")  # the forward passes autocast
    assert progress.step == step + 1 and progress.batch == 1 and "loss" in progress.totals
    for parameter in model.parameters():
        assert parameter.device == CUDA and parameter.grad.device == CUDA
        state = optimizer.state[parameter]
        assert state["exp_avg"].device == CUDA and state["exp_avg_sq"].device == CUDA
    if name != "none":  # the inner PGD stepped (HM's stop rule ends it after one step: its loss reads unchanged)
        assert out.stats["pgd_steps"] == (1 if name == "hm" else CONFIG.steps)
    if name in ("tride", "ca_tride"):
        assert out.stats["anp"] == step % 2


@pytest.mark.parametrize("name, step", [("none", 0), ("ca_tride", 0), ("ca_tride", 1)])
def test_a_resnet18_step_runs_on_cuda(name, step, fake_cuda):
    """The 224 px model of CUB, CARS and SOP: ImageNet normalisation, frozen BatchNorm, the plain-mean pooling."""
    out, model, _, _ = one_step(fake_cuda, name, step, "bf16", arch="resnet18")
    assert out.loss.device == CUDA
    assert all(buffer.device == CUDA for buffer in model.buffers())
    assert all(parameter.grad.device == CUDA for parameter in model.parameters() if parameter.requires_grad)


def test_a_training_step_shared_by_two_processes_runs_on_cuda(fake_cuda, monkeypatch):
    """Rank 1 of 2: its share of the pairs, the gathered embeddings of every objective, NCCL collectives."""
    _stub_collectives(monkeypatch, 2)
    for name, step in STEPS:
        out, model, _, _ = one_step(fake_cuda, name, step, world=World(1, 2, CUDA))
        assert out.loss.device == CUDA
        assert all(parameter.grad.device == CUDA for parameter in model.parameters())


def test_fit_trains_and_logs_on_cuda(fake_cuda):
    """The pipeline's loop: SPC-2 batches of the stage's Dataset, pinned for CUDA, a CA-TRIDE step each, the log's
    metrics after the epoch."""
    model, train_set = fake_cuda.model(), fake_cuda.dataset(16)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)

    def epoch_metrics(trained):
        return evaluation.epoch_metrics(trained, fake_cuda.dataset(), 10, CUDA, LAMBDA, seed=0)

    rows, state = fit(model, optimizer, train_set, torch.as_tensor(train_set.labels),
                      build_defense("ca_tride", CONFIG, LAMBDA), epoch_metrics, epochs=1, pairs_per_batch=4, seed=0,
                      margin=CONFIG.margin, miner="gradual_semihard", device=CUDA)
    assert state == {"epoch": 1, "step": 4}  # an SPC-2 epoch: a pair per item, 4 pairs a batch
    assert {"epoch", "step", "loss", "anp", "R@1", "collapseness", "spread"} <= set(rows[0])
    assert all(parameter.grad.device == CUDA for parameter in model.parameters())


def test_the_gathered_objectives_exchange_cuda_tensors(fake_cuda, monkeypatch):
    _stub_collectives(monkeypatch, 2)
    world = World(1, 2, CUDA)
    rows = torch.rand(3, 5, device=CUDA, requires_grad=True)
    gathered = world.gather_shares(rows, [2, 3])  # rank 1 holds the larger share
    assert gathered.shape == (5, 5) and gathered.device == CUDA
    gathered.sum().backward()  # _AllGather's backward: an all-reduce of the gradients
    assert rows.grad.shape == rows.shape and rows.grad.device == CUDA

    for device in (CUDA, CPU):  # the attack runner gathers its per-query scores from the CPU
        shard = torch.rand(4, 2, dtype=torch.float64, device=device)
        assert world.gather(shard).shape == (8, 2) and world.gather(shard).device == device

    ctx = StepContext(0, 1, 0, torch.Generator(), 0.2, "random", world=world)
    batch = torch.rand(8, 3, device=CUDA)  # 4 pairs: rank 1 holds pairs 2 and 3
    assert own_rows(batch, ctx).shape == (4, 3)
    assert gather_rows(own_rows(batch, ctx), ctx, 4).shape == (8, 3)
    assert gather_rows(own_rows(batch, ctx), ctx, 4).device == CUDA
    assert world.diverged(fake_cuda.model()) == []


# ------------------------------------------------------------------------------------------------ attacks

BUDGET = AttackBudget(eps=0.1, step_size=0.02, steps=2, random_start=True, batch_size=10)


def attack(fake_cuda, monkeypatch, names, world=None, n=24, queries=16):
    """``run_attacks`` on the stage's Dataset and CPU labels, as the attack stage calls it; the results and the
    gallery the attacks ranked against."""
    galleries = []
    real_gallery = runner.Gallery
    monkeypatch.setattr(runner, "Gallery", lambda *args: galleries.append(real_gallery(*args)) or galleries[-1])
    test_set = fake_cuda.dataset(n)
    results = runner.run_attacks(names, fake_cuda.model(), test_set, torch.as_tensor(test_set.labels), BUDGET, 0,
                                 max_queries=queries, save_images=3, world=world)
    return results, galleries[0]


@pytest.mark.parametrize("name", ATTACKS)
def test_every_attack_runs_on_cuda(name, fake_cuda, monkeypatch):
    results, gallery = attack(fake_cuda, monkeypatch, [name])
    assert gallery.embeddings.device == CUDA and gallery.labels.device == CUDA
    result = results[name]
    assert result.n_queries == 16 and result.per_query["targets"].shape[0] == 16
    for score in ATTACK_SCORES[name]:
        assert result.per_query[f"{score}/adversarial"].shape == (16,)
    assert result.images.device == CPU and result.images.shape == (3, 1, 28, 28)


def test_attacks_shared_by_two_processes_run_on_cuda(fake_cuda, monkeypatch):
    _stub_collectives(monkeypatch, 2)
    # 20 items in batches of 10: one batch each, so the fake processes' equal shards add up to the gallery
    results, gallery = attack(fake_cuda, monkeypatch, list(ATTACKS), World(1, 2, CUDA), n=20, queries=20)
    assert gallery.embeddings.shape == (20, 16) and gallery.embeddings.device == CUDA
    for name, result in results.items():
        assert result.per_query[f"{ATTACK_SCORES[name][0]}/adversarial"].shape == (20,)


@pytest.mark.parametrize("draw", [
    lambda gallery, labels, queries: targets.random_targets(len(gallery), queries, 2, torch.Generator()),
    lambda gallery, labels, queries: targets.top_fraction_targets(gallery, queries, 1, torch.Generator()),
    lambda gallery, labels, queries: targets.nearest_neighbor_targets(gallery, queries),
    lambda gallery, labels, queries: targets.nearest_other_label_targets(gallery, labels, queries),
    lambda gallery, labels, queries: targets.reference_other_label_targets(gallery, labels, queries),
], ids=["random", "top_fraction", "nearest_neighbor", "nearest_other_label", "reference_other_label"])
def test_targets_are_drawn_on_the_gallerys_device(draw, fake_cuda):
    gallery = torch.nn.functional.normalize(torch.rand(40, 8, device=CUDA), dim=1)
    labels = (torch.arange(40) % CLASSES).to(CUDA)
    found = draw(gallery, labels, torch.arange(6, device=CUDA))
    assert found.device == CUDA and found.dtype == torch.int64 and found.shape[0] == 6


def test_the_reports_attack_runs_work_on_cuda(fake_cuda, monkeypatch):
    """The eps sweep and the retrieval examples: the attack runner on a few spread test images. The examples'
    rankings are faiss searches of host copies, which fake tensors do not have: only their inputs are checked,
    on the CPU."""
    model, test_set = fake_cuda.model(), fake_cuda.dataset()
    labels = torch.as_tensor(test_set.labels)
    points = sweep.eps_sweep(["es", "ca_plus"], model, test_set, labels, BUDGET, [0.0, 0.1], seed=0, n_queries=8)
    assert len(points) == 2 * 3  # (ES:D, ES:R, CA+) at two eps

    ranked = []

    def rankings(*arguments):
        ranked.append([argument for argument in arguments if isinstance(argument, Tensor)])

    monkeypatch.setattr(examples, "query_rankings", rankings)
    monkeypatch.setattr(examples, "candidate_rankings", rankings)
    found = examples.attacked_examples(model, test_set, labels, BUDGET, seed=0, n_queries=4, k=3)
    assert found.query_adversarial.device == found.candidate_adversarial.device == CPU
    assert len(ranked) == 2 and all(tensor.device == CPU for tensors in ranked for tensor in tensors)


# ------------------------------------------------------------------------------------------------ metrics


class NoFaiss:
    def __getattr__(self, name):
        raise AssertionError(f"faiss.{name} called on a CUDA gallery")


@pytest.mark.parametrize("exclude_on", [None, CUDA, CPU])
def test_nearest_neighbors_of_a_cuda_gallery_are_searched_on_cuda(exclude_on, fake_cuda, monkeypatch):
    monkeypatch.setattr(knn, "faiss", NoFaiss())
    gallery = torch.rand(30, 8, device=CUDA)
    exclude = None if exclude_on is None else torch.arange(-1, 9, device=exclude_on)  # -1: nothing excluded
    distances, indices = knn.nearest_neighbors(gallery[:10], gallery, 3, exclude=exclude, block_size=4)
    assert distances.shape == indices.shape == (10, 3)
    assert distances.device == indices.device == CUDA


@pytest.mark.parametrize("labels_on", [CUDA, CPU])
def test_recall_at_1_of_cuda_queries_on_cuda(labels_on, fake_cuda, monkeypatch):
    monkeypatch.setattr(knn, "faiss", NoFaiss())
    embeddings, labels = torch.rand(20, 8, device=CUDA), (torch.arange(20) % CLASSES).to(labels_on)
    own = torch.arange(20)  # as epoch_metrics passes it, on the CPU
    hits = metrics.recall_at_1(embeddings, labels, embeddings, labels, own)
    assert hits.shape == (20,) and hits.device == CUDA and hits.dtype == torch.float64


@pytest.mark.parametrize("relevant_in_a_block", [0, 10**6], ids=["counting", "search"])
def test_rank_metrics_rank_on_cuda(relevant_in_a_block, fake_cuda, monkeypatch):
    monkeypatch.setitem(HOST_READS, ("catride_core.retrieval.metrics", "rank_metrics"), relevant_in_a_block)
    embeddings, labels = torch.rand(20, 8, device=CUDA), torch.arange(20) % CLASSES  # labels on the CPU, as evaluate's
    per_query = evaluation.query_metrics(embeddings, labels, (1, 4), block_size=6, queries=range(3, 17))
    assert set(per_query) == {"R@1", "R@4", "AP", "AP@R", "AP@10"}
    for values in per_query.values():
        assert values.shape == (14,) and values.device == CUDA and values.dtype == torch.float64
    unexcluded = metrics.rank_metrics(embeddings[:5], labels[:5].to(CUDA), embeddings, labels, None, (1,))
    assert unexcluded["AP"].device == CUDA


def test_collapse_diagnostics_of_cuda_embeddings(fake_cuda):
    embeddings, labels = torch.rand(24, 8, device=CUDA), torch.arange(24) % CLASSES
    found = collapse.collapse_diagnostics(embeddings, labels, LAMBDA, seed=0, pairs_per_batch=4)
    assert set(found) == {"collapseness", "spread"}


def test_the_training_logs_metrics_on_cuda(fake_cuda, monkeypatch):
    monkeypatch.setattr(knn, "faiss", NoFaiss())
    found = evaluation.epoch_metrics(fake_cuda.model(), fake_cuda.dataset(), 10, CUDA, LAMBDA, seed=0)
    assert set(found) == {"R@1", "collapseness", "spread"}


@pytest.mark.parametrize("processes", [1, 2])
def test_the_benign_evaluation_runs_on_cuda(processes, fake_cuda, monkeypatch):
    _stub_collectives(monkeypatch, processes)
    world = World() if processes == 1 else World(0, 2, CUDA)
    # 20 items, blocks of 10: one block each, so the fake processes' equal shards add up to the test split
    found = evaluation.benign_metrics(fake_cuda.model(), fake_cuda.dataset(20), 10, CUDA, (1, 2), 10, LAMBDA,
                                      0, world, 1)
    assert {"R@1", "R@2", "mAP", "mAP@R", "NMI", "collapseness", "spread"} <= set(found.metrics)
    assert all(values.shape == (20,) for values in found.per_query.values())


# ------------------------------------------------------------------------------------------------ the harness


def test_the_check_fails_where_a_gpu_would_fail_or_pay(fake_cuda):
    x = torch.zeros(4, 3, device=CUDA)
    with pytest.raises(DeviceMix):
        x + torch.ones(4, 3)
    with pytest.raises(DeviceMix):  # torch copies a CPU index to the GPU and waits, every time
        x[torch.arange(2)]
    with pytest.raises(DeviceMix):
        torch.rand(3, generator=torch.Generator(), device=CUDA)
    with pytest.raises(TypeError, match="numpy"):
        x.numpy()
    with pytest.raises(AssertionError, match="HOST_READS does not stub"):
        float(x.sum())
    assert (x + torch.tensor(1.0)).device == CUDA  # a CPU scalar may meet any device
    pooled = torch.nn.AdaptiveAvgPool2d((2, 2))(torch.rand(1, 2, 6, 6, device=CUDA, requires_grad=True))
    with pytest.raises(Nondeterministic, match="_adaptive_avg_pool2d_backward"):
        pooled.sum().backward()


class Scale(torch.autograd.Function):
    """x * k with a non-tensor k, as ``distributed._AllGather`` takes its rank and size."""

    @staticmethod
    def forward(ctx, x, k):
        ctx.k = k
        return x * k

    @staticmethod
    def backward(ctx, gradient):
        return gradient * ctx.k, None


def test_backward_by_hand_gives_the_engines_gradients():
    """The stand-in for the autograd engine, on real CPU tensors: the engine's gradients, ``.grad`` as it sets them."""
    torch.manual_seed(0)
    model = build_model("c2f2", 16)
    images = torch.rand(6, 1, 28, 28, requires_grad=True)

    def loss():
        anchors, others = model(images).split(3)
        return (Scale.apply(anchors, 2.0) - others).norm(dim=1).topk(2).values.sum()

    leaves = [images, *model.parameters()]
    expected = torch.autograd.grad(loss(), leaves)
    torch.testing.assert_close(backward_by_hand([loss()], [torch.ones(())], [images]), [expected[0]])
    assert all(leaf.grad is None for leaf in leaves)  # as torch.autograd.grad, no .grad written
    backward_by_hand([loss()], [torch.ones(())])
    for leaf, gradient in zip(leaves, expected, strict=True):
        torch.testing.assert_close(leaf.grad, gradient)
