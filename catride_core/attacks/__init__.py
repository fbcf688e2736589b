"""Adversarial attacks: the sign-PGD engine and the ranking attacks (docs/method.md sections 4-5).

- ``pgd``: the sign-PGD engine and the checks before and after an attack;
- ``targets``: seeded target selection;
- ``base``: the gallery, the budget and the ``RankingAttack`` interface;
- ``prank``: ranking-list arithmetic (items ahead, prank, R@1);
- ``candidate_query`` (CA+, CA-, QA+, QA-, GTT), ``embedding_space`` (TMA,
  ES), ``misranking`` (LTM, GTM): the attacks;
- ``runner``: the registry by name and ``run_attacks``;
- ``queries``, ``sweep``, ``examples``: the small runs behind the report's eps
  sweep and retrieval examples (``run_attacks`` on a few spread test images).

Attack and score names come from ``catride_core.names``. Importing the package imports
none of its modules, so a defense that only needs ``pgd`` does not depend on the attacks.
"""
