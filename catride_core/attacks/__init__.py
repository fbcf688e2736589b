"""Adversarial attacks: the sign-PGD engine and the ranking attacks (METHOD.md sections 4-5)."""

from catride_core.attacks.pgd import AttackCheckError, PGDResult, check_adversarial, check_inputs, eval_mode, pgd
from catride_core.attacks.ranking import (
    ATTACK_SCORES,
    ATTACKS,
    SCORE_NAMES,
    AttackBudget,
    AttackResult,
    Gallery,
    RankingAttack,
    build_attack,
    run_attack,
)

__all__ = [
    "ATTACKS",
    "ATTACK_SCORES",
    "SCORE_NAMES",
    "AttackBudget",
    "AttackCheckError",
    "AttackResult",
    "Gallery",
    "PGDResult",
    "RankingAttack",
    "build_attack",
    "check_adversarial",
    "check_inputs",
    "eval_mode",
    "pgd",
    "run_attack",
]
