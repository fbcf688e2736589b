"""The one sign-PGD engine of the project (docs/method.md sections 4 and 5).

Every attack and every adversarial-training defense perturbs images with
``pgd``: the caller only writes the objective, a function of the embeddings of
the perturbed images, and ``pgd`` does the rest (eval mode, gradients with
respect to the input only, the L_inf projection, the [0, 1] clamp, restoring
the model's modes). ``check_inputs`` and ``check_adversarial`` are the checks
before and after an attack; they raise ``AttackCheckError`` rather than log.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from catride_core.errors import AttackCheckError
from catride_core.models.embedding import eval_mode

#: slack on the L_inf bound for float rounding of clean + delta
EPS_TOLERANCE = 1e-6


@dataclass(frozen=True)
class PGDResult:
    """What ``pgd`` returns.

    Attributes:
        images: the last iterate, detached, in [0, 1] and within eps of the clean
            images. Shape: (B, C, H, W)
        loss: the objective at the last iterate it was evaluated on: the returned
            images when the attack stopped early (or took no step), else the
            iterate before the final step (evaluating the final one would cost a
            forward pass the attack itself never needs).
        steps_taken: number of sign steps applied.
    """

    images: Tensor
    loss: float
    steps_taken: int


def pgd(
    model: nn.Module,
    images: Tensor,
    objective: Callable[[Tensor], Tensor],
    eps: float,
    step_size: float,
    steps: int,
    random_start: bool = False,
    generator: torch.Generator | None = None,
    stop_below: float | None = None,
    stop_change_below: float | None = None,
) -> PGDResult:
    """Sign-PGD that *minimises* ``objective(model(x'))`` in the L_inf ball around ``images``.

    Each step is x <- clip_[0,1](clip_[x0 - eps, x0 + eps](x - step_size * sign(grad))).
    The model runs in eval mode (each submodule's mode is restored afterwards,
    also on an exception) and its parameters are untouched: the gradient is
    taken with respect to the input only, so no parameter ``.grad`` is written.
    The last iterate is returned, not the best one. With ``eps``, ``step_size``
    or ``steps`` equal to 0 the clean images come back unchanged.

    Args:
        model: maps images in [0, 1] to embeddings.
        images: clean images in [0, 1]. Shape: (B, C, H, W)
        objective: embeddings of the perturbed images -> scalar loss to minimise;
            a closure holds whatever else it needs (clean embeddings, targets).
            Shape: (B, D) -> ()
        eps: L_inf radius in [0, 1] pixel units (e.g. 8/255).
        step_size: size of each sign step (e.g. 1/255).
        steps: maximum number of steps.
        random_start: start from a uniform point of the ball (clamped to [0, 1]).
        generator: source of the random start (default: torch's global RNG).
        stop_below: stop once the loss is below this value (checked before each step).
        stop_change_below: stop once the loss changed by less than this value
            since the previous iterate (HM uses 1e-7).

    Returns:
        the adversarial images, the loss and the number of steps taken.
    """
    if eps < 0 or step_size < 0 or steps < 0:
        raise ValueError(f"pgd needs eps, step_size, steps >= 0, got {eps}, {step_size}, {steps}")
    clean = images.detach()
    with eval_mode(model):
        if eps == 0 or step_size == 0 or steps == 0:
            with torch.no_grad():
                loss = float(objective(model(clean)))
            return PGDResult(images=clean.clone(), loss=loss, steps_taken=0)

        adversarial = clean.clone()
        if random_start:
            noise = torch.rand(clean.shape, generator=generator, device=_device_of(generator, clean))
            adversarial = (clean + eps * (2.0 * noise.to(clean) - 1.0)).clamp(0.0, 1.0)
        previous: float | None = None
        last: Tensor | None = None
        steps_taken = 0
        # the loss is read on the host (a device sync) only where a stop rule needs it, and once at the end
        stops = stop_below is not None or stop_change_below is not None
        for _ in range(steps):
            adversarial.requires_grad_(True)
            objective_value = objective(model(adversarial))
            last = objective_value.detach()
            loss = float(last) if stops else None
            if stop_below is not None and loss < stop_below:
                break
            if stop_change_below is not None and previous is not None and abs(loss - previous) < stop_change_below:
                break
            (gradient,) = torch.autograd.grad(objective_value, adversarial)
            with torch.no_grad():
                stepped = adversarial - step_size * gradient.sign()
                adversarial = torch.minimum(torch.maximum(stepped, clean - eps), clean + eps).clamp_(0.0, 1.0)
            previous = loss
            steps_taken += 1
    return PGDResult(images=adversarial.detach(), loss=float("nan") if last is None else float(last),
                     steps_taken=steps_taken)


def _device_of(generator: torch.Generator | None, images: Tensor) -> torch.device:
    """Where random numbers are drawn: the generator's device, else the images'."""
    return images.device if generator is None else generator.device


def check_inputs(model: nn.Module, embeddings: Tensor) -> None:
    """Fail unless the model is fully in eval mode and its clean embeddings are finite.

    Raises:
        AttackCheckError: a submodule is in training mode (dropout or BatchNorm
            would make the attack and its scores random), or an embedding is
            NaN/inf.
    """
    training = [name or type(model).__name__ for name, module in model.named_modules() if module.training]
    if training:
        raise AttackCheckError(f"model must be in eval mode before an attack; in training mode: {training[:5]}")
    if not bool(torch.isfinite(embeddings).all()):
        raise AttackCheckError("the model's clean embeddings hold NaN or inf")


def check_adversarial(clean: Tensor, adversarial: Tensor, eps: float) -> None:
    """Fail unless ``adversarial`` is a valid perturbation of ``clean``.

    Raises:
        AttackCheckError: shapes differ, a value is NaN, a value lies outside
            [0, 1], or max |adversarial - clean| > eps + 1e-6.
    """
    if adversarial.shape != clean.shape:
        raise AttackCheckError(f"adversarial shape {tuple(adversarial.shape)} != clean {tuple(clean.shape)}")
    if bool(torch.isnan(adversarial).any()):
        raise AttackCheckError("adversarial images hold NaN")
    if adversarial.numel() == 0:
        return
    low, high = float(adversarial.min()), float(adversarial.max())
    if low < 0.0 or high > 1.0:
        raise AttackCheckError(f"adversarial images leave [0, 1]: range [{low}, {high}]")
    largest = float((adversarial - clean.to(adversarial)).abs().max())
    if largest > eps + EPS_TOLERANCE:
        raise AttackCheckError(f"perturbation of {largest} exceeds eps = {eps}")
