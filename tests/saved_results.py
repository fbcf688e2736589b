"""Small hand-made saved results in the pipeline's formats, for the report tests: metrics, bootstrap, logs."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from catride_core import names

#: model -> its ERS; ARS is ERS - 2, every interval is the value +- 1.5 (``tride`` has no bootstrap interval)
ERS = {"pretrained": 10.0, "ca_tride": 30.0, "tride": 29.0, "none": 4.0, "act": 60.0}
BOOTSTRAP = {"resamples": 5, "confidence": 0.8, "seed": 0, "queries": 12}


def benign_metrics(model: str) -> dict:
    """What ``evaluate`` writes; every mean's bootstrap interval is the value +- 1."""
    means = {"R@1": 90.0 + ERS[model] / 10, "R@2": 95.0, "mAP": 80.0, "mAP@R": 79.0, "mAP@10": 78.0}
    return means | {"NMI": 70.0, "NMI_std": 0.5, "collapseness": -0.1, "spread": 1.2,
                    "benign_low": {k: v - 1.0 for k, v in means.items()},
                    "benign_high": {k: v + 1.0 for k, v in means.items()}}


def robustness_metrics(model: str) -> dict:
    """What ``robustness`` writes: point values, and (but for ``tride``) intervals and the bootstrap's settings."""
    ers = ERS[model]
    adversarial = {score: float(i) for i, score in enumerate(names.SCORES)}
    metrics = {"ERS": ers, "ARS": ers - 2, "adversarial": adversarial, "clean": adversarial}
    if model != "tride":
        metrics |= {"ERS_low": ers - 1.5, "ERS_high": ers + 1.5, "ARS_low": ers - 3.5, "ARS_high": ers - 0.5,
                    "adversarial_low": {s: v - 0.5 for s, v in adversarial.items()},
                    "adversarial_high": {s: v + 0.5 for s, v in adversarial.items()},
                    "bootstrap": BOOTSTRAP}
    return metrics


def resamples(model: str) -> pd.DataFrame:
    """Five resamples of ERS (ARS = ERS - 2); row r is the same resampled queries for every model.

    Row-wise, ca_tride - tride is [-1, 0, 1, 2, 3] (an interval that contains 0)
    and tride - pretrained is [9, 10, 11, 12, 13] (one that does not).
    """
    ers = {"pretrained": [10.0, 11.0, 12.0, 13.0, 14.0], "ca_tride": [18.0, 21.0, 24.0, 27.0, 30.0],
           "tride": [19.0, 21.0, 23.0, 25.0, 27.0], "none": [2.0, 3.0, 4.0, 5.0, 6.0],
           "act": [58.0, 59.0, 60.0, 61.0, 62.0]}[model]
    return pd.DataFrame({"ERS": ers, "ARS": np.subtract(ers, 2.0), **{s: np.divide(ers, 10.0) for s in names.SCORES}})


def write_results(root: Path, models: tuple[str, ...] = tuple(ERS)) -> Path:
    """metrics/{benign,robustness}/<model>.json, bootstrap/<model>.csv and logs/ under ``root``."""
    for model in models:
        for kind, payload in (("benign", benign_metrics(model)), ("robustness", robustness_metrics(model))):
            path = root / "metrics" / kind / f"{model}.json"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(payload))
        (root / "bootstrap").mkdir(exist_ok=True)
        resamples(model).to_csv(root / "bootstrap" / f"{model}.csv", index=False)
    write_logs(root, models)
    return root


def write_logs(root: Path, models: Sequence[str]) -> None:
    """logs/pretrain.csv and logs/finetune/<model>.csv under ``root``, as the training stages write them."""
    (root / "logs" / "finetune").mkdir(parents=True, exist_ok=True)
    for model in models:
        training_log(model).to_csv(root / "logs" / "finetune" / f"{model}.csv", index=False)
    pd.DataFrame({"epoch": [1, 2], "step": [4, 8], "loss": [0.3, 0.2], "R@1": [80.0, 85.0],
                  "collapseness": [-0.2, -0.3], "spread": [1.1, 1.2]}).to_csv(root / "logs" / "pretrain.csv", index=False)


def training_log(model: str) -> pd.DataFrame:
    """As ``finetune`` logs it: ``pretrained`` is one row of epoch 0; the defenses have inner-PGD columns."""
    if model == names.PRETRAINED:
        return pd.DataFrame({"epoch": [0], "step": [0], "R@1": [85.0], "collapseness": [-0.3], "spread": [1.2]})
    return pd.DataFrame({"epoch": [1, 2], "step": [4, 8], "loss": [0.1, 0.05], "adv_loss": [0.5, 0.4],
                         "pgd_steps": [0.0, 2.0], "R@1": [86.0, 87.0], "collapseness": [-0.3, -0.35],
                         "spread": [1.2, 1.1]})
