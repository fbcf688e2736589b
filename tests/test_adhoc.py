"""The commands outside DVC: any checkpoint and prepared data, params.yaml optional, `--set` overrides, a table."""

import io
import json

import pandas as pd
import pytest
import torch
import yaml
from click.testing import CliRunner
from support import write_params

from catride_core.artifacts.checkpoints import load_checkpoint, save_checkpoint
from catride_core.artifacts.prepared import load_prepared
from catride_core.attacks.base import AttackBudget
from catride_core.attacks.runner import run_attacks
from catride_core.cli import SUMMARIES, main
from catride_core.commands.prepare import prepare
from catride_core.data.prepared import build_dataset
from catride_core.models import build_model
from catride_core.names import ERS_ATTACKS


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """120 prepared digits and a randomly initialised c2f2 checkpoint (any checkpoint will do), in a folder of their own."""
    root = tmp_path_factory.mktemp("adhoc")
    data = root / "prepared"
    result = CliRunner().invoke(prepare, ["--params", str(write_params(root)), "--out", str(data)])
    assert result.exit_code == 0, result.output
    (root / "params.yaml").unlink()  # from here on, no params file anywhere near
    torch.manual_seed(0)
    checkpoint = root / "any.pt"
    save_checkpoint(checkpoint, build_model("c2f2", 8), {"note": "not made by the pipeline"}, {})
    return {"data": data, "checkpoint": checkpoint}


def catride(*args, cwd):
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(cwd)
        return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def table(output):
    """The table a command printed, as rows of words (the header first)."""
    return [line.split() for line in output.strip().splitlines()]


def test_evaluate_without_params_file_takes_defaults_and_overrides(saved, tmp_path):
    result = catride("evaluate", "--data", saved["data"], "--checkpoint", saved["checkpoint"],
                     "--set", "evaluate.recall_at=[1, 3]", "--set", "evaluate.batch_size=7", cwd=tmp_path)
    assert result.exit_code == 0, result.output
    rows = table(result.stdout)
    assert rows[0] == ["metric", "value"] and [r[0] for r in rows[1:3]] == ["R@1", "R@3"]
    assert list(tmp_path.iterdir()) == []  # no --metrics: a table, no file
    # the same numbers as the stage writes with the same settings in a params file
    params = tmp_path / "p" / "params.yaml"
    params.parent.mkdir()
    params.write_text(yaml.safe_dump({"evaluate": {"recall_at": [1, 3], "batch_size": 7}}))
    staged = catride("evaluate", "--params", params, "--data", saved["data"], "--checkpoint", saved["checkpoint"],
                     "--metrics", tmp_path / "m.json", cwd=tmp_path)
    assert staged.exit_code == 0 and staged.stdout == result.stdout
    written = json.loads((tmp_path / "m.json").read_text())
    # the table prints every number; the file adds the benign means' intervals
    assert {r[0]: float(r[1]) for r in rows[1:]} == pytest.approx(
        {key: value for key, value in written.items() if not isinstance(value, dict)}, abs=0.005)
    assert set(written["benign_low"]) == set(written["benign_high"]) == {"R@1", "R@3", "mAP", "mAP@R", "mAP@10"}
    assert all(written["benign_low"][k] <= written[k] <= written["benign_high"][k] for k in written["benign_low"])


def test_params_yaml_of_the_working_folder_is_used(saved, tmp_path):
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({"evaluate": {"recall_at": [2]}}))
    result = catride("evaluate", "--data", saved["data"], "--checkpoint", saved["checkpoint"], cwd=tmp_path)
    assert result.exit_code == 0 and table(result.stdout)[1][0] == "R@2"
    overridden = catride("evaluate", "--data", saved["data"], "--checkpoint", saved["checkpoint"],
                         "--set", "evaluate.recall_at=[4]", cwd=tmp_path)
    assert table(overridden.stdout)[1][0] == "R@4"  # --set wins over the file


def test_attack_with_overrides_is_the_runner_with_those_settings(saved, tmp_path):
    result = catride("attack", "--data", saved["data"], "--checkpoint", saved["checkpoint"], "--no-progress",
                     "--set", "attack.eps=8/255", "--set", "attack.names=[es, ca_plus]", "--set", "attack.steps=2",
                     "--set", "attack.max_queries=5", "--set", "attack.batch_size=5", cwd=tmp_path)
    assert result.exit_code == 0, result.output
    rows = table(result.stdout)
    assert rows[0] == ["attack", "score", "clean", "adversarial", "queries"]
    printed = {r[1]: (float(r[2]), float(r[3])) for r in rows[1:]}
    assert set(printed) == {"ES:D", "ES:R", "CA+"} and all(r[4] == "5" for r in rows[1:])
    # the runner called directly with eps 8/255 (exactly: the fraction parses to 8/255)
    data = load_prepared(saved["data"])
    test_set = build_dataset(data, "test", train=False)
    model, _ = load_checkpoint(saved["checkpoint"], "cpu", data.meta)
    direct = run_attacks(["es", "ca_plus"], model, test_set, torch.as_tensor(test_set.labels),
                         AttackBudget(eps=8 / 255, step_size=3 / 255, steps=2, batch_size=5), 0, max_queries=5)
    for score, (clean, adversarial) in printed.items():
        attack = "es" if score.startswith("ES") else "ca_plus"
        assert clean == pytest.approx(direct[attack].clean[score], abs=5e-4)
        assert adversarial == pytest.approx(direct[attack].adversarial[score], abs=5e-4)


@pytest.mark.parametrize(("override", "message"), [
    ("attack.epz=1", "error: --set attack.epz=1: attack.epz: unknown key"),
    ("attack.eps=2", "error: --set attack.eps=2: attack.eps: must be <= 1.0, got 2"),
    ("attack.eps", "error: --set attack.eps: expected section.key=value"),
    ("attack.names=[es", "error: --set attack.names=[es: the value is not valid YAML"),
])
def test_a_bad_override_is_one_line_naming_it(saved, tmp_path, override, message):
    result = catride("attack", "--data", saved["data"], "--checkpoint", saved["checkpoint"], "--set", override,
                     cwd=tmp_path)
    assert result.exit_code == 2 and result.output.strip().splitlines() == [result.output.strip()]
    assert result.output.strip().startswith(message)


def test_help_lists_every_command_with_one_line(tmp_path):
    result = catride("--help", cwd=tmp_path)
    listed = result.output.split("Commands:")[1].strip().splitlines()
    assert [line.split()[0] for line in listed] == list(main.commands) == list(SUMMARIES)
    assert all(line.split(maxsplit=1)[1] == SUMMARIES[line.split()[0]] for line in listed)


def test_sweep_and_examples_run_on_any_checkpoint(saved, tmp_path):
    common = ("--data", saved["data"], "--checkpoint", saved["checkpoint"])
    swept = catride("sweep", *common, "--set", "report.sweep_eps=[0, 8/255]", "--set", "report.sweep_queries=4",
                    "--set", "attack.steps=1", "--no-progress", cwd=tmp_path)
    assert swept.exit_code == 0, swept.output
    header, *rows = table(swept.stdout)
    assert header[:3] == ["eps", "n_queries", "ES:D"] and len(rows) == 2
    drawn = catride("examples", *common, "--ranking", tmp_path / "r.png", "--targets", tmp_path / "t.png",
                    "--set", "attack.steps=1", "--set", "report.example_queries=2", "--set", "report.example_top_k=2",
                    cwd=tmp_path)
    assert drawn.exit_code == 0, drawn.output
    assert (tmp_path / "r.png").read_bytes()[:4] == (tmp_path / "t.png").read_bytes()[:4] == b"\x89PNG"
    assert len(pd.read_fwf(io.StringIO(drawn.stdout))) == 2  # one row per example query


def test_report_takes_overrides_without_a_params_file(tmp_path):
    metrics = tmp_path / "metrics"
    (metrics / "benign").mkdir(parents=True)
    (metrics / "robustness").mkdir()
    (metrics / "benign" / "none.json").write_text(json.dumps({"R@1": 90.0, "R@2": 95.0, "mAP": 80.0, "NMI": 70.0,
                                                                    "collapseness": -0.3, "spread": 1.2}))
    (metrics / "robustness" / "none.json").write_text(json.dumps({"adversarial": {"ES:R": 10.0}, "ERS": None,
                                                                 "ARS": None}))
    result = catride("report", "--metrics", metrics, "--table", tmp_path / "t.csv", "--markdown", tmp_path / "r.md",
                     "--tradeoff", tmp_path / "tradeoff.csv", "--html", tmp_path / "r.html",
                     "--figures", tmp_path / "figures", "--set", "models=[none]", "--set", "report.example_models=[none]",
                     "--set", "attack.eps=8/255",
                     "--set", "attack.max_queries=null", cwd=tmp_path)
    assert result.exit_code == 0, result.output
    text = (tmp_path / "r.md").read_text()
    assert "eps 8/255 (0.0314)" in text and "every test image" in text and "| none |" in text


def test_adaptive_on_any_checkpoint_and_robustness_beside_pgd(saved, tmp_path):
    common = ("--data", saved["data"], "--checkpoint", saved["checkpoint"])
    small = ("--set", "attack.steps=2", "--set", "attack.max_queries=6", "--set", "adaptive.queries=6",
             "--set", "adaptive.steps=3", "--set", "adaptive.restarts=1")
    out = tmp_path / "adaptive"
    result = catride("adaptive", *common, "--surrogate", saved["checkpoint"], "--out", out, "--no-progress", *small,
                     cwd=tmp_path)
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == sorted([*(f"{n}.csv" for n in ERS_ATTACKS), "summary.json"])
    summary = json.loads((out / "summary.json").read_text())
    assert summary["queries"] == 6 and set(summary["attacks"]) == set(ERS_ATTACKS)
    assert summary["attacks"]["es"]["runs"] == ["pgd", "apgd", "restart1", "transfer"]
    assert summary["attacks"]["ltm"]["runs"] == ["pgd", "apgd", "restart1"]  # no transfer for LTM
    assert set(summary["checks"]) == {"unbounded", "monotone", "never_better_than_pgd"}
    assert summary["checks"]["never_better_than_pgd"]["passed"]
    table = pd.read_csv(out / "es.csv")
    assert list(table.columns[:3]) == ["index", "ES:D/clean", "ES:D/pgd"] and len(table) == 6
    assert "check unbounded: " in result.stdout
    # the robustness stage puts the adaptive ERS and ARS beside PGD's on the same queries
    attacks, benign = tmp_path / "attacks", tmp_path / "benign.json"
    assert catride("attack", *common, "--out", attacks, "--no-progress", *small, cwd=tmp_path).exit_code == 0
    assert catride("evaluate", *common, "--metrics", benign, cwd=tmp_path).exit_code == 0
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({"attack": {"max_queries": 6}, "robustness": {"resamples": 50}}))
    done = catride("robustness", "--params", params, "--benign", benign, "--attacks", attacks, "--adaptive", out,
                   "--out", tmp_path / "r.json", "--bootstrap", tmp_path / "b.csv", cwd=tmp_path)
    assert done.exit_code == 0, done.output
    metrics = json.loads((tmp_path / "r.json").read_text())
    for key in ("ERS", "ARS"):
        assert metrics[f"{key}:adaptive_low"] <= metrics[f"{key}:adaptive"] <= metrics[f"{key}:adaptive_high"]
        # never better for the model than PGD on the same queries
        assert metrics[f"{key}:adaptive"] <= metrics["adaptive"]["pgd_same_queries"][key] + 1e-9
    assert metrics["adaptive"]["queries"] == 6 and metrics["adaptive"]["checks"] == summary["checks"]
    assert set(metrics["adaptive"]["gradient_norm"]) == set(ERS_ATTACKS)
