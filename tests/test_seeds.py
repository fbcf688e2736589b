"""The seeds table: which runs of `dvc exp show --json` it keeps, and its means and spreads."""

from __future__ import annotations

import json
import math

import pandas as pd
import pytest
import yaml
from support import run

from catride_core.commands.seeds import seeds
from catride_core.errors import ArtifactError
from catride_core.report.seeds import (
    experiment_runs,
    runs_by_seed,
    seeds_markdown,
    seeds_table,
    unfinished_experiments,
)

PARAMS = {"base": {"seed": 0}, "models": ["pretrained", "ca_tride"], "finetune": {"epochs": 3},
          "adaptive": {"surrogate": "pretrained"}, "report": {"example_models": ["ca_tride"]}}


def revision(name, seed, r1, ers, *, epochs=3, error=False):
    params = {**PARAMS, "base": {"seed": seed}, "finetune": {"epochs": epochs}}
    metrics = {}
    for model, shift in (("pretrained", 0.0), ("ca_tride", 10.0)):
        metrics[f"metrics/benign/{model}.json"] = {"data": {"R@1": r1 + shift, "mAP": 50.0, "NMI": 60.0}}
        metrics[f"metrics/robustness/{model}.json"] = {"data": {"ERS": ers + shift, "ARS": None, "adversarial": {"ES:R": 1.0}}}
    data = {"rev": name, "params": {"params.yaml": {"data": params}}, "metrics": metrics}
    if error:
        data = {"rev": name, "error": {"msg": "failed"}}
    return {"rev": name, "name": name, "data": data}


def exp_show():
    """What `dvc exp show --json` prints: the workspace, the commit, and the commit's experiments."""
    experiments = [
        {"revs": [revision("exp-a", 1, 82.0, 30.0)]},
        {"revs": [revision("exp-b", 2, 84.0, 40.0)]},
        {"revs": [revision("exp-c", 3, 99.0, 99.0, epochs=8)]},  # another variant: never mixed in
        {"revs": [revision("exp-d", 4, 0.0, 0.0, error=True)]},  # a failed run: no metrics
        {"revs": [revision("exp-e", 1, 0.0, 0.0)]},  # seed 1 again: the first listed wins
    ]
    return [revision("workspace", 0, 80.0, 20.0), {**revision("main", 0, 70.0, 10.0), "experiments": experiments}]


def test_runs_differing_only_by_seed_are_kept_one_per_seed():
    by_seed = runs_by_seed(experiment_runs(exp_show()), PARAMS)
    assert {seed: run.name for seed, run in by_seed.items()} == {0: "workspace", 1: "exp-a", 2: "exp-b"}


def test_mean_and_sample_std_over_seeds():
    table = seeds_table(runs_by_seed(experiment_runs(exp_show()), PARAMS), PARAMS["models"])
    row = table[(table.model == "ca_tride") & (table.score == "R@1")].iloc[0]
    # R@1 of ca_tride over seeds 0, 1, 2: 90, 92, 94 -> mean 92, sample std sqrt((4 + 0 + 4) / 2) = 2
    assert (row["mean"], row["std"], row["n"], row["seeds"]) == (92.0, 2.0, 3, "0 1 2")
    ers = table[(table.model == "pretrained") & (table.score == "ERS")].iloc[0]
    assert ers["mean"] == 30.0 and ers["std"] == pytest.approx(10.0)  # 20, 30, 40
    ars = table[(table.model == "pretrained") & (table.score == "ARS")].iloc[0]
    assert math.isnan(ars["mean"]) and ars["n"] == 0  # null in every run
    markdown = seeds_markdown(table, PARAMS["models"])
    assert "| ca_tride | 92.0 ± 2.0 |" in markdown and "seeds 0, 1, 2" in markdown


def executed(revision_, state):
    """An experiment as `dvc exp show --json` lists it with its executor (``state`` as DVC writes it)."""
    return {"revs": [revision_], "name": revision_["name"], "executor": {"state": state, "name": "dvc-task"}}


def test_unfinished_experiments_are_left_out_and_named():
    # while an experiment runs, `dvc exp show` lists its temporary copy's metrics: its baseline's, not its own
    experiments = [
        executed(revision("exp-a", 1, 82.0, 30.0), "success"),
        executed(revision("exp-b", 2, 70.0, 10.0), "running"),
        executed(revision("exp-c", 3, 70.0, 10.0), "queued"),
        executed(revision("exp-d", 4, 70.0, 10.0), "failed"),
    ]
    shown = [{**revision("main", 0, 70.0, 10.0), "experiments": experiments}]
    assert [run.name for run in experiment_runs(shown)] == ["main", "exp-a"]
    assert unfinished_experiments(shown) == ["exp-b (running)", "exp-c (queued)", "exp-d (failed)"]


def test_one_seed_has_no_spread():
    by_seed = runs_by_seed(experiment_runs(exp_show()[:1]), PARAMS)
    table = seeds_table(by_seed, ["pretrained"])
    assert math.isnan(table.iloc[0]["std"]) and "80.0 |" in seeds_markdown(table, ["pretrained"])


def test_not_a_list_is_refused():
    with pytest.raises(ArtifactError, match="expected a list"):
        experiment_runs({"workspace": {}})


def test_command_writes_both_tables_from_a_saved_exp_show(tmp_path):
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump(PARAMS))
    (tmp_path / "exp.json").write_text(json.dumps(exp_show()))
    result = run(seeds, "--params", params, "--exp-json", tmp_path / "exp.json",
                 "--table", tmp_path / "seeds.csv", "--markdown", tmp_path / "seeds.md")
    assert result.exit_code == 0, result.output
    table = pd.read_csv(tmp_path / "seeds.csv")
    assert set(table.model) == {"pretrained", "ca_tride"} and (table[table.score == "R@1"]["n"] == 3).all()
    assert "92.0 ± 2.0" in (tmp_path / "seeds.md").read_text()


def test_too_few_seeds_is_an_error_naming_the_fix(tmp_path):
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({**PARAMS, "finetune": {"epochs": 5}}))  # no run has these params
    (tmp_path / "exp.json").write_text(json.dumps(exp_show()))
    result = run(seeds, "--params", params, "--exp-json", tmp_path / "exp.json",
                 "--table", tmp_path / "seeds.csv", "--markdown", tmp_path / "seeds.md")
    assert result.exit_code == 2
    assert "need at least 2" in result.output and "dvc exp run --queue -S base.seed=N" in result.output
    assert not (tmp_path / "seeds.csv").exists()
