"""The adaptive attack engine: APGD's step-size schedule, momentum and the best iterate, for ranking objectives.

RobRank's protocol, which ``pgd`` keeps, is fixed-step sign-PGD from the clean
image returning the last iterate. A defense can look robust under it without
being so (a starved or saturated gradient, a step size that overshoots), so
the adaptive evaluation (docs/method.md section 11) attacks the same
objectives with an optimiser in the spirit of APGD (Croce & Hein, "Reliable
evaluation of adversarial robustness with an ensemble of diverse
parameter-free attacks", ICML 2020), per query:

- a step size that starts at 2 eps and halves at fixed checkpoints of the
  budget when progress stalls (too few of the steps since the last checkpoint
  lowered the loss, or neither the step size nor the best loss changed since
  then), restarting from the best iterate when it halves;
- momentum 0.75 on the sign-gradient step;
- the best iterate: the lowest loss reached, not the last image;
- the same L_inf ball and [0, 1] box as ``pgd``; a random start, where asked,
  from a uniform point of the ball drawn from the given generator, so the
  result is a function of the seed and the inputs.

The objective here gives one loss per image (``losses(embeddings)`` of shape
(B,)): each image's schedule and best iterate are its own. Every ranking
attack's objective is the mean of such per-image losses
(``RankingAttack.losses``); ``attacks.adaptive`` runs it on every attack.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from catride_core.models.embedding import eval_mode

#: embeddings of the perturbed images -> one loss per image. Shape: (B, D) -> (B,)
Losses = Callable[[Tensor], Tensor]

#: APGD's constants: momentum, the share of steps that must lower the loss, the first checkpoint and the spacing
MOMENTUM = 0.75
RHO = 0.75
FIRST_CHECKPOINT, CHECKPOINT_SHRINK, CHECKPOINT_MIN_GAP = 0.22, 0.03, 0.06


def checkpoints(steps: int) -> list[int]:
    """The iterations at which APGD may halve its step size: ceil(p_j steps) for p_0 = 0, p_1 = 0.22 and
    p_{j+1} = p_j + max(p_j - p_{j-1} - 0.03, 0.06), below ``steps``."""
    fractions = [0.0, FIRST_CHECKPOINT]
    while fractions[-1] < 1.0:
        fractions.append(fractions[-1] + max(fractions[-1] - fractions[-2] - CHECKPOINT_SHRINK, CHECKPOINT_MIN_GAP))
    marks = sorted({math.ceil(round(fraction * steps, 9)) for fraction in fractions})  # 0.57 * 100 is not 57.0000001
    return [mark for mark in marks if 0 < mark < steps]


@dataclass(frozen=True)
class AdaptiveResult:
    """What ``adaptive_pgd`` returns.

    Attributes:
        images: the best iterate of each image (the lowest loss it reached, the
            start included), detached, in [0, 1] and within eps of the clean
            images. Shape: (B, C, H, W)
        losses: each image's loss at ``images``. Shape: (B,)
        halvings: how often each image's step size was halved. Shape: (B,)
    """

    images: Tensor
    losses: Tensor
    halvings: Tensor


def _project(images: Tensor, clean: Tensor, eps: float) -> Tensor:
    return torch.minimum(torch.maximum(images, clean - eps), clean + eps).clamp_(0.0, 1.0)


def _losses_and_gradient(model: nn.Module, images: Tensor, losses: Losses) -> tuple[Tensor, Tensor]:
    images = images.detach().requires_grad_(True)
    values = losses(model(images))
    (gradient,) = torch.autograd.grad(values.sum(), images)
    return values.detach(), gradient


def adaptive_pgd(
    model: nn.Module,
    images: Tensor,
    losses: Losses,
    eps: float,
    steps: int,
    random_start: bool = False,
    generator: torch.Generator | None = None,
) -> AdaptiveResult:
    """Minimise each image's ``losses`` over the L_inf ball of radius ``eps`` around it (and [0, 1]) with APGD.

    The model runs in eval mode (each submodule's mode restored) and its
    parameters are untouched. ``steps`` gradient evaluations after the start;
    each image keeps its lowest loss and the image that reached it.

    Args:
        model: images in [0, 1] -> embeddings.
        images: clean images in [0, 1]. Shape: (B, C, H, W)
        losses: embeddings of the perturbed images -> one loss per image. Shape: (B, D) -> (B,)
        eps: L_inf radius in [0, 1] pixel units.
        steps: iterations.
        random_start: start from a uniform point of the ball (clamped to [0, 1]), drawn from ``generator``.
        generator: source of the random start (default: torch's global RNG).

    Returns:
        the best images, their losses and the number of halvings, per image.
    """
    if eps < 0 or steps < 0:
        raise ValueError(f"adaptive_pgd needs eps, steps >= 0, got {eps}, {steps}")
    clean = images.detach()
    batch = len(clean)
    shape = (batch,) + (1,) * (clean.ndim - 1)
    with eval_mode(model):
        current = clean.clone()
        if random_start and eps > 0:
            device = clean.device if generator is None else generator.device
            noise = torch.rand(clean.shape, generator=generator, device=device).to(clean)
            current = (clean + eps * (2.0 * noise - 1.0)).clamp(0.0, 1.0)
        loss, gradient = _losses_and_gradient(model, current, losses)
        best, best_loss = current.clone(), loss.clone()
        halvings = torch.zeros(batch, dtype=torch.long, device=clean.device)
        if eps == 0 or steps == 0:
            return AdaptiveResult(best, best_loss, halvings)

        step = torch.full(shape, 2.0 * eps, dtype=clean.dtype, device=clean.device)
        previous = current.clone()
        marks = set(checkpoints(steps))
        last_mark, lowered = 0, torch.zeros(batch, dtype=torch.long, device=clean.device)
        best_at_mark, step_at_mark = best_loss.clone(), step.clone()
        for iteration in range(steps):
            proposal = _project(current - step * gradient.sign(), clean, eps)
            if iteration == 0:
                moved = proposal
            else:
                moved = _project(current + MOMENTUM * (proposal - current) + (1 - MOMENTUM) * (current - previous),
                                 clean, eps)
            previous, current = current, moved
            new_loss, gradient = _losses_and_gradient(model, current, losses)
            lowered += (new_loss < loss).long()
            loss = new_loss
            better = loss < best_loss
            best = torch.where(better.view(shape), current, best)
            best_loss = torch.where(better, loss, best_loss)
            if iteration + 1 in marks:
                span = iteration + 1 - last_mark
                stalled = lowered < RHO * span
                unchanged = (step.view(-1) == step_at_mark.view(-1)) & (best_loss == best_at_mark)
                halve = stalled | unchanged
                step_at_mark, best_at_mark = step.clone(), best_loss.clone()
                step = torch.where(halve.view(shape), step / 2.0, step)
                halvings += halve.long()
                # an image whose step halves starts again from its best iterate
                restart = halve.view(shape)
                current = torch.where(restart, best, current)
                previous = torch.where(restart, best, previous)
                if bool(halve.any()):
                    loss, gradient_again = _losses_and_gradient(model, current, losses)
                    gradient = torch.where(restart, gradient_again, gradient)
                last_mark, lowered = iteration + 1, torch.zeros_like(lowered)
    return AdaptiveResult(best.detach(), best_loss, halvings)
