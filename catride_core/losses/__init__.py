"""Losses and miners: triplet loss, negative miners, collapseness."""

from catride_core.losses.collapse import collapseness, soft_max_mean
from catride_core.losses.miners import gradual_margin, mine_triplets
from catride_core.losses.triplet import triplet_loss

__all__ = ["collapseness", "gradual_margin", "mine_triplets", "soft_max_mean", "triplet_loss"]
