"""``catride robustness`` on hand-made attack results: ERS:ref and its bounds appear exactly where the reference attacks ran."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import yaml
from click.testing import CliRunner

from catride_core.commands.robustness import robustness
from catride_core.names import ATTACK_SCORES, ERS_ATTACKS, REFERENCE_ATTACKS
from catride_core.retrieval.robustness import ers, ers_reference


def write_attacks(folder, names, n_queries=6):
    """Each attack's JSON and per-query CSV, with random per-query values in each score's range."""
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True)
    for name in names:
        table = {"index": np.arange(n_queries)}
        for side in ("clean", "adversarial"):
            for score in ATTACK_SCORES[name]:
                top = 1.0 if score in ("TMA", "ES:D", "ES:D:ref") else 100.0
                table[f"{score}/{side}"] = np.round(top * rng.random(n_queries), 4)
        frame = pd.DataFrame(table)
        frame.to_csv(folder / f"{name}.csv", index=False)
        result = {"attack": name, "n_queries": n_queries,
                  **{side: {s: float(frame[f"{s}/{side}"].mean()) for s in ATTACK_SCORES[name]}
                     for side in ("clean", "adversarial")}}
        (folder / f"{name}.json").write_text(json.dumps(result))


@pytest.mark.parametrize("references", [list(REFERENCE_ATTACKS), [], ["gtm_ref"]])
def test_robustness_writes_ers_ref_with_its_bounds_only_where_every_reference_attack_ran(tmp_path, references):
    names = [*ERS_ATTACKS, *references]
    with_reference = references == list(REFERENCE_ATTACKS)
    write_attacks(tmp_path / "attacks", names)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({"attack": {"names": names},
                                                          "robustness": {"resamples": 20}}))
    (tmp_path / "benign.json").write_text(json.dumps({"R@1": 80.0, "spread": 1.2}))
    out, resamples = tmp_path / "robustness.json", tmp_path / "bootstrap.csv"
    result = CliRunner().invoke(robustness, [str(a) for a in (
        "--params", tmp_path / "params.yaml", "--benign", tmp_path / "benign.json", "--attacks", tmp_path / "attacks",
        "--out", out, "--bootstrap", resamples)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    metrics, table = json.loads(out.read_text()), pd.read_csv(resamples)
    if not with_reference:
        assert not any(key.startswith("ERS:ref") for key in metrics) and "ERS:ref" not in table
        return
    adversarial = metrics["adversarial"]
    assert metrics["ERS:ref"] == pytest.approx(ers_reference(adversarial), abs=1e-4)
    assert metrics["ERS:ref"] != pytest.approx(ers(adversarial), abs=1e-3)  # the reference scores differ here
    low, high = metrics["ERS:ref_low"], metrics["ERS:ref_high"]
    assert low == pytest.approx(np.quantile(table["ERS:ref"], 0.025), abs=1e-4)
    assert high == pytest.approx(np.quantile(table["ERS:ref"], 0.975), abs=1e-4)
    assert {"GTM:ref", "ES:D:ref", "LTM:ref"} <= set(metrics["adversarial_low"]) and len(table) == 20
