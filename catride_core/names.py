"""The one source of every list of names: datasets, architectures, miners, defenses, models, attacks, scores.

Identifier-safe names are used in params.yaml, file names and stage names
(``ca_plus``, ``es``, ``ca_tride``); display names (``CA+``, ``ES:D``) in
results and reports. Everything else (the ``Literal`` types of the params, the
registries of sources, architectures, defenses and attacks, the report's
columns) is derived from these tables. This module imports nothing, so any
stage can use it without depending on the code behind the names.
"""

from __future__ import annotations

DATASETS: tuple[str, ...] = ("mnist5k", "mnist", "fashion", "cub", "cars", "sop", "folder")
#: the datasets read from image files at 224 px; the others are held in memory at 28 px
IMAGE_FILE_DATASETS: tuple[str, ...] = ("cub", "cars", "sop", "folder")
ARCHITECTURES: tuple[str, ...] = ("c2f2", "resnet18", "resnet50")
MINERS: tuple[str, ...] = ("random", "semihard", "gradual_semihard")

#: adversarial fine-tuning defenses; ``none`` is benign fine-tuning (the undefended baseline)
DEFENSES: tuple[str, ...] = ("none", "est", "act", "hm", "tride", "ca_tride")
#: the defenses that train on adversarial examples, made by an inner PGD at every step
ADVERSARIAL_DEFENSES: tuple[str, ...] = DEFENSES[1:]
#: the benign model as pretrained, before any fine-tuning; every other model is a defense
PRETRAINED = "pretrained"
#: every name a compared model can have
MODELS: tuple[str, ...] = (PRETRAINED, *DEFENSES)

#: attack -> display names of the scores it reports (ES reports two), in the order of the ERS vector
ATTACK_SCORES: dict[str, tuple[str, ...]] = {
    "ca_plus": ("CA+",),
    "ca_minus": ("CA-",),
    "qa_plus": ("QA+",),
    "qa_minus": ("QA-",),
    "tma": ("TMA",),
    "es": ("ES:D", "ES:R"),
    "ltm": ("LTM",),
    "gtm": ("GTM",),
    "gtt": ("GTT",),
    # compatibility: RobRank's own rules, only to compare with tables measured through them (method.md 5.1)
    "gtm_ref": ("GTM:ref",),  # GTM with RobRank's target rule
    "es_ref": ("ES:D:ref",),  # ES:D of the iterate one step before the last
    "ltm_ref": ("LTM:ref",),  # LTM with the query's own clean embedding among the positives
}
#: identifier-safe attack names
ATTACKS: tuple[str, ...] = tuple(ATTACK_SCORES)
#: the nine attacks of ERS and ARS (what attack.names runs by default)
ERS_ATTACKS: tuple[str, ...] = ATTACKS[:9]
#: reference-compatibility attack -> the ERS attack whose score it stands in for, to compare with a published table
REFERENCE_ATTACKS: dict[str, str] = {"gtm_ref": "gtm", "es_ref": "es", "ltm_ref": "ltm"}
#: reference-rule score -> the ERS score it stands in for in ERS:ref
REFERENCE_SCORES: dict[str, str] = {"GTM:ref": "GTM", "ES:D:ref": "ES:D", "LTM:ref": "LTM"}
#: display names of the ten scores, in the order of the ERS vector
SCORES: tuple[str, ...] = tuple(score for name in ERS_ATTACKS for score in ATTACK_SCORES[name])
