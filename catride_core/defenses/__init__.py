"""Adversarial-training defenses (docs/method.md section 4), each a step function of the training loop.

``build_defense(name, cfg, diagnostic_inverse_temperature)`` is the registry,
one builder per name of ``names.DEFENSES``: ``none`` (benign fine-tuning),
``est``, ``act``, ``hm``, ``tride`` and ``ca_tride``. A defense is called as
``defense(model, images, labels, ctx) -> StepOutput`` and carries its running
state explicitly (``state_dict`` / ``load_state_dict``).
"""

from __future__ import annotations

from collections.abc import Callable

from catride_core import names
from catride_core.config import FinetuneParams
from catride_core.defenses.act import AntiCollapseTriplet
from catride_core.defenses.base import (
    AdversarialDefense,
    Defense,
    PerturbedTriplets,
    TripletTensors,
)
from catride_core.defenses.benign import NoDefense
from catride_core.defenses.est import EmbeddingShiftedTriplet
from catride_core.defenses.hm import HardnessManipulation
from catride_core.defenses.tride import TripletDecoupling, decoupling_phase


def _budget(cfg: FinetuneParams, name: str, diagnostic_inverse_temperature: float) -> dict[str, float]:
    """The inner PGD budget of defense ``name``: its own section's eps, step_size, steps where set, else the shared ones."""
    own = getattr(cfg, name)
    return {
        "eps": cfg.eps if own.eps is None else own.eps,
        "step_size": cfg.step_size if own.step_size is None else own.step_size,
        "steps": cfg.steps if own.steps is None else own.steps,
        "diagnostic_inverse_temperature": diagnostic_inverse_temperature,
    }


def _tride(cfg: FinetuneParams, diagnostic_inverse_temperature: float, collapse_aware: bool) -> TripletDecoupling:
    section = cfg.ca_tride if collapse_aware else cfg.tride
    return TripletDecoupling(
        collapse_aware=collapse_aware,
        inverse_temperature=cfg.ca_tride.inverse_temperature if collapse_aware else 0.0,
        ramp=section.ramp,
        stop_below=cfg.ca_tride.stop_below if collapse_aware else None,
        extra_term=section.extra_term,
        extra_weight=section.extra_weight,
        extra_margin=section.extra_margin,
        **_budget(cfg, "ca_tride" if collapse_aware else "tride", diagnostic_inverse_temperature),
    )


#: defense name -> builder (finetune section, lambda of the logged collapseness) -> a fresh defense
BUILDERS: dict[str, Callable[[FinetuneParams, float], Defense]] = {
    "none": lambda cfg, lam: NoDefense(),
    "est": lambda cfg, lam: EmbeddingShiftedTriplet(**_budget(cfg, "est", lam)),
    "act": lambda cfg, lam: AntiCollapseTriplet(**_budget(cfg, "act", lam)),
    "hm": lambda cfg, lam: HardnessManipulation(
        stop_change_below=cfg.hm.stop_change_below, ics=cfg.hm.ics, ics_weight=cfg.hm.ics_weight,
        **_budget(cfg, "hm", lam),
    ),
    "tride": lambda cfg, lam: _tride(cfg, lam, collapse_aware=False),
    "ca_tride": lambda cfg, lam: _tride(cfg, lam, collapse_aware=True),
}
# names.DEFENSES is what params.yaml may name; a name without a builder (or the reverse) is a bug
if set(BUILDERS) != set(names.DEFENSES):
    raise RuntimeError(
        f"catride_core.defenses: the registry builds {sorted(BUILDERS)}, but names.DEFENSES is {sorted(names.DEFENSES)}"
    )

#: the miner each defense trains with: its section's ``miner``, or the one its method fixes
FIXED_MINERS = {"est": "random", "hm": "semihard"}


def training_miner(name: str, cfg: FinetuneParams) -> str:
    """The miner the training loop hands a defense (EST and HM fix theirs, docs/method.md 4.1 and 4.3)."""
    return FIXED_MINERS.get(name) or getattr(cfg, name).miner


def build_defense(name: str, cfg: FinetuneParams, diagnostic_inverse_temperature: float) -> Defense:
    """A fresh defense (fresh running state) configured from the finetune section.

    The inner PGD uses the defense's own section's ``eps``, ``step_size`` and
    ``steps`` where set, else the shared ``cfg.eps``, ``cfg.step_size``,
    ``cfg.steps``; each defense reads its own section (``cfg.hm``, ``cfg.ca_tride`` ...), and
    CA-TRIDE's lambda is ``cfg.ca_tride.inverse_temperature``.
    ``diagnostic_inverse_temperature`` is lambda of the ``collapseness``
    statistic logged by every adversarial defense
    (``evaluate.diagnostic_inverse_temperature``).

    Raises:
        ValueError: unknown ``name``.
    """
    if name not in BUILDERS:
        raise ValueError(f"unknown defense {name!r}; available: {', '.join(names.DEFENSES)}")
    return BUILDERS[name](cfg, diagnostic_inverse_temperature)


__all__ = [
    "BUILDERS",
    "FIXED_MINERS",
    "AdversarialDefense",
    "AntiCollapseTriplet",
    "Defense",
    "EmbeddingShiftedTriplet",
    "HardnessManipulation",
    "NoDefense",
    "PerturbedTriplets",
    "TripletDecoupling",
    "TripletTensors",
    "build_defense",
    "decoupling_phase",
    "training_miner",
]
