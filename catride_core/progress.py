"""Where a training run stands: the record the training loop keeps and a resumable state saves.

It sits below both the training loop (``training``), which updates it, and
the file layer (``artifacts.training_state``), which writes and reads it, so
neither depends on the other.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class Progress:
    """Where a training run stands: exactly what it needs, besides the weights, optimiser and defense, to go on.

    Attributes:
        epoch: the epoch in progress (0-based); ``epochs`` once training is done.
        batch: how many batches of that epoch are trained on.
        step: the global step index (the next step's).
        totals: running sums of that epoch's step statistics.
        rows: the log rows of the completed epochs.
    """

    epoch: int = 0
    batch: int = 0
    step: int = 0
    totals: dict[str, float] = field(default_factory=dict)
    rows: list[dict[str, float]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "batch": self.batch, "step": self.step, "totals": dict(self.totals),
                "rows": [dict(row) for row in self.rows]}

    @classmethod
    def from_dict(cls, state: dict[str, Any]) -> Progress:
        return cls(int(state["epoch"]), int(state["batch"]), int(state["step"]), dict(state["totals"]),
                   [dict(row) for row in state["rows"]])
