"""Losses and miners: the triplet loss and the negative miners of SPC-2 batches.

Collapseness C and its soft maximum M_lambda are statistics of evaluation as
much as of training; they live in ``catride_core.retrieval.collapse``.
"""

from catride_core.losses.miners import gradual_margin, mine_triplets
from catride_core.losses.triplet import triplet_loss

__all__ = ["gradual_margin", "mine_triplets", "triplet_loss"]
