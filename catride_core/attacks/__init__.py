"""Adversarial attacks: the sign-PGD engine and the ranking attacks (docs/method.md sections 4-5).

- ``pgd``: the sign-PGD engine and the checks before and after an attack;
- ``targets``: seeded target selection;
- ``base``: the gallery, the budget and the ``RankingAttack`` interface;
- ``prank``: ranking-list arithmetic (items ahead, prank, R@1);
- ``candidate_query`` (CA+, CA-, QA+, QA-, GTT), ``embedding_space`` (TMA,
  ES), ``misranking`` (LTM, GTM): the attacks;
- ``runner``: the registry by name and ``run_attacks``.

Attack and score names come from ``catride_core.names``.
"""

from catride_core.attacks.base import AttackBudget, Gallery, RankingAttack
from catride_core.attacks.pgd import PGDResult, check_adversarial, check_inputs, pgd
from catride_core.attacks.runner import AttackResult, build_attack, run_attacks
from catride_core.errors import AttackCheckError

__all__ = [
    "AttackBudget",
    "AttackCheckError",
    "AttackResult",
    "Gallery",
    "PGDResult",
    "RankingAttack",
    "build_attack",
    "check_adversarial",
    "check_inputs",
    "pgd",
    "run_attacks",
]
