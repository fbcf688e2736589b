"""Each stage command on tiny data in tmp_path: it runs, writes what dvc.yaml declares, reads only the
params its stage declares, and fails cleanly."""

import json

import pandas as pd
import pytest
import torch
import yaml
from click.testing import CliRunner
from support import declared_params, recording_params_reads

from catride_core import names
from catride_core.artifacts.checkpoints import load_checkpoint
from catride_core.artifacts.prepared import load_prepared
from catride_core.cli import main
from catride_core.commands.attack import attack
from catride_core.commands.curves import curves
from catride_core.commands.evaluate import evaluate
from catride_core.commands.examples import examples
from catride_core.commands.finetune import finetune
from catride_core.commands.prepare import prepare
from catride_core.commands.pretrain import pretrain
from catride_core.commands.report import report
from catride_core.commands.robustness import robustness
from catride_core.commands.sweep import sweep
from catride_core.retrieval.bootstrap import resample_indices, resampled_means

TINY = {
    "models": ["pretrained", "ca_tride"],
    "prepare": {"dataset": "mnist5k", "max_per_class": 30},
    "pretrain": {"epochs": 2, "pairs_per_batch": 16, "embedding_dim": 32},
    "evaluate": {"recall_at": [1, 2], "block_size": 20},
    "finetune": {"epochs": 2, "pairs_per_batch": 16, "steps": 2},
    "attack": {"steps": 2, "max_queries": 12, "batch_size": 5, "save_images": 3},
    "adaptive": {"queries": 6, "steps": 2, "restarts": 1, "surrogate": "pretrained"},
    "report": {"sweep_eps": [0, "8/255"], "sweep_queries": 6, "example_models": ["ca_tride"], "example_queries": 2,
               "example_top_k": 3},
}


def write_params(folder, data):
    path = folder / "params.yaml"
    path.write_text(yaml.safe_dump(data))
    return str(path)


def invoke(command, *args):
    return CliRunner().invoke(command, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    """Every stage on 300 mnist5k digits, for the pretrained model and CA-TRIDE, recording the params each reads."""
    root = tmp_path_factory.mktemp("run")
    params = write_params(root, TINY)
    paths = {
        "params": params,
        "data": root / "data" / "prepared",
        "start": root / "models" / "start.pt",
        "log": root / "logs" / "pretrain.csv",
        "metrics_dir": root / "metrics",
        "report": root / "reports" / "index.md",
    }
    data, common = paths["data"], ("--params", params)
    runs = {}  # dvc stage name -> (result, params keys read)

    def run(stage_name, command, *args):
        with recording_params_reads() as reads:
            runs[stage_name] = (invoke(command, *common, *args), reads)

    run("prepare", prepare, "--out", data)
    run("pretrain", pretrain, "--data", data, "--checkpoint", paths["start"], "--log", paths["log"], "--no-progress")
    for model in TINY["models"]:
        checkpoint = root / "models" / f"{model}.pt"
        run(f"finetune@{model}", finetune, "--data", data, "--start", paths["start"], "--model", model,
            "--checkpoint", checkpoint, "--log", root / "logs" / "finetune" / f"{model}.csv", "--no-progress")
        run(f"evaluate@{model}", evaluate, "--data", data, "--checkpoint", checkpoint,
            "--metrics", root / "metrics" / "benign" / f"{model}.json")
        run(f"attack@{model}", attack, "--data", data, "--checkpoint", checkpoint, "--out", root / "attacks" / model,
            "--no-progress")
        run(f"robustness@{model}", robustness, "--benign", root / "metrics" / "benign" / f"{model}.json",
            "--attacks", root / "attacks" / model, "--out", root / "metrics" / "robustness" / f"{model}.json",
            "--bootstrap", root / "bootstrap" / f"{model}.csv")
        run(f"sweep@{model}", sweep, "--data", data, "--checkpoint", checkpoint,
            "--out", root / "metrics" / "sweep" / f"{model}.csv", "--no-progress")
    for model in TINY["report"]["example_models"]:
        run(f"examples@{model}", examples, "--data", data, "--checkpoint", root / "models" / f"{model}.pt",
            "--ranking", root / "reports" / "examples" / f"{model}_es.png",
            "--targets", root / "reports" / "examples" / f"{model}_ca_plus.png")
    run("curves", curves, "--sweeps", root / "metrics" / "sweep", "--table", root / "reports" / "sweep.csv",
        "--figure", root / "reports" / "sweep.png")
    reports = root / "reports"
    run("report", report, "--metrics", root / "metrics", "--logs", root / "logs", "--bootstrap", root / "bootstrap",
        "--sweep", reports / "sweep.png", "--examples", reports / "examples", "--table", reports / "robustness.csv",
        "--tradeoff", reports / "tradeoff.csv", "--markdown", paths["report"], "--html", reports / "index.html",
        "--figures", reports / "figures")
    return paths, runs


def test_every_stage_reads_only_the_params_it_declares(pipeline):
    _, runs = pipeline
    for stage_name, (result, reads) in runs.items():
        assert result.exit_code == 0, (stage_name, result.output)
        declared = declared_params(stage_name)
        undeclared = sorted(k for k in reads if not any(k == d or k.startswith(d + ".") for d in declared))
        assert not undeclared, f"{stage_name} reads {undeclared}, which dvc.yaml does not declare for it"
        assert reads, f"{stage_name}: no params read was recorded"


def test_stages_run_and_write_their_outputs(pipeline):
    paths, runs = pipeline
    assert all(r.exit_code == 0 for r, _ in runs.values()), [r.output for r, _ in runs.values() if r.exit_code]
    data = load_prepared(paths["data"])
    assert len(data.manifest) == 300 and data.meta["n_test"] == 60 and data.images.shape == (300, 1, 28, 28)
    log = pd.read_csv(paths["log"])
    assert list(log["epoch"]) == [1, 2] and {"loss", "R@1", "step", "collapseness", "spread"} <= set(log.columns)
    metrics = json.loads((paths["metrics_dir"] / "benign" / "pretrained.json").read_text())
    assert {"R@1", "R@2", "mAP", "mAP@R", "NMI", "collapseness", "spread"} <= set(metrics)
    assert all(0.0 <= metrics[k] <= 100.0 for k in ("R@1", "R@2", "mAP", "mAP@R", "NMI"))


def test_finetune_log_and_checkpoint(pipeline):
    paths, _ = pipeline
    root = paths["metrics_dir"].parent
    log = pd.read_csv(root / "logs" / "finetune" / "ca_tride.csv")
    assert list(log["epoch"]) == [1, 2]
    # the progress ramp: only the very first step is benign, so the first epoch's inner PGD takes steps
    assert log["pgd_steps"].iloc[0] > 0 and {"adv_loss", "anp", "collapseness", "R@1"} <= set(log.columns)
    _, payload = load_checkpoint(root / "models" / "ca_tride.pt")
    assert payload["params"]["finetune"]["model"] == "ca_tride"
    assert payload["params"]["finetune"]["ca_tride"]["inverse_temperature"] == 10.0
    assert "hm" not in payload["params"]["finetune"]  # only its own section travels
    assert payload["params"]["pretrain"]["epochs"] == 2  # the pretrained model's params travel along
    assert payload["state"]["step"] == 2 * 15 and payload["state"]["defense_state"] == {}


def test_pretrained_model_is_the_start_fine_tuned_for_zero_epochs(pipeline):
    paths, _ = pipeline
    root = paths["metrics_dir"].parent
    start, _ = load_checkpoint(paths["start"])
    model, payload = load_checkpoint(root / "models" / "pretrained.pt")
    assert all(torch.equal(a, b) for a, b in zip(start.state_dict().values(), model.state_dict().values()))
    assert payload["params"]["finetune"] == {"model": "pretrained"}
    log = pd.read_csv(root / "logs" / "finetune" / "pretrained.csv")
    assert list(log["epoch"]) == [0] and log["R@1"].iloc[0] == pd.read_csv(paths["log"])["R@1"].iloc[-1]


def test_one_attack_process_writes_every_attack_with_per_query_results(pipeline):
    paths, _ = pipeline
    root = paths["metrics_dir"].parent
    folder = root / "attacks" / "pretrained"
    assert {p.name for p in folder.iterdir()} == {f"{n}.{ext}" for n in names.ERS_ATTACKS for ext in ("json", "csv", "pt")}
    es = json.loads((folder / "es.json").read_text())
    assert es["n_queries"] == 12 and set(es["adversarial"]) == {"ES:D", "ES:R"}
    assert es["clean"]["ES:D"] == 0.0 and es["adversarial"]["ES:D"] > 0.0
    assert torch.load(folder / "es.pt").shape == (3, 1, 28, 28)
    per_query = pd.read_csv(folder / "es.csv")
    assert list(per_query["index"]) == list(range(12))
    assert per_query["ES:D/adversarial"].mean() == pytest.approx(es["adversarial"]["ES:D"], abs=1e-4)
    ca = pd.read_csv(folder / "ca_plus.csv")
    assert {"target_0", "CA+/clean", "CA+/adversarial"} <= set(ca.columns) and (ca["target_0"] != ca["index"]).all()


def test_robustness_and_report(pipeline):
    paths, _ = pipeline
    root = paths["metrics_dir"].parent
    robust = json.loads((root / "metrics" / "robustness" / "ca_tride.json").read_text())
    assert 0.0 <= robust["ERS"] <= 100.0 and 0.0 <= robust["ARS"] <= 100.0 and len(robust["adversarial"]) == 10
    assert robust["bootstrap"] == {"resamples": 1000, "confidence": 0.95, "seed": 0, "queries": 12}
    replicates = pd.read_csv(root / "bootstrap" / "ca_tride.csv")
    assert list(replicates.columns) == ["ERS", "ARS", *names.SCORES] and len(replicates) == 1000

    def check_bounds(low, high, values):
        # the bounds are the 2.5 % and 97.5 % quantiles of the saved replicates (6 digits there, 4 here)
        assert low == pytest.approx(values.quantile(0.025), abs=2e-4) and high == pytest.approx(values.quantile(0.975), abs=2e-4)

    for key in ("ERS", "ARS"):
        check_bounds(robust[f"{key}_low"], robust[f"{key}_high"], replicates[key])
    for score in names.SCORES:
        check_bounds(robust["adversarial_low"][score], robust["adversarial_high"][score], replicates[score])
    # 12 queries leave the interval of ERS a few points wide, around the point value
    assert robust["ERS_low"] < robust["ERS"] < robust["ERS_high"] and robust["ERS_high"] - robust["ERS_low"] > 1.0
    # every model's replicate r is on the same resampled images: those drawn from base.seed and the 12 queries
    indices = resample_indices(0, 12, 1000)
    for model in ("pretrained", "ca_tride"):
        shift = pd.read_csv(root / "attacks" / model / "es.csv")["ES:D/adversarial"].to_numpy()
        saved = pd.read_csv(root / "bootstrap" / f"{model}.csv")["ES:D"]
        assert saved.to_numpy() == pytest.approx(resampled_means({"ES:D": shift}, indices)["ES:D"], rel=1e-5)
    table = pd.read_csv(root / "reports" / "robustness.csv")
    assert list(table["model"]) == ["pretrained", "ca_tride"] and {"ERS", "ARS", "CA+", "GTT", "NMI"} <= set(table)
    text = paths["report"].read_text()
    assert "by ERS:" in text and "| ca_tride |" in text
    assert {p.name for p in (root / "reports" / "figures").iterdir()} == {
        f"{name}.png" for name in ("scores", "attacks", "tradeoff", "finetune", "pretrain")}
    assert "<h2>Measured ranking</h2>" in (root / "reports" / "index.html").read_text()


def test_sweep_curves_and_examples(pipeline):
    paths, _ = pipeline
    root = paths["metrics_dir"].parent
    points = pd.read_csv(root / "reports" / "sweep.csv")
    assert list(points.columns) == ["model", "attack", "score", "eps", "clean", "adversarial", "n_queries"]
    # 2 models x (ES:D, ES:R, CA+) x 2 eps, every point on the 6 spread queries
    assert len(points) == 2 * 3 * 2 and set(points["n_queries"]) == {6}
    assert sorted(set(points["eps"])) == pytest.approx([0.0, 8 / 255])
    at_zero = points[points["eps"] == 0]
    assert (at_zero["adversarial"] - at_zero["clean"]).abs().max() < 1e-6  # eps = 0 changes nothing
    wide = pd.read_csv(root / "metrics" / "sweep" / "ca_tride.csv")
    assert {"eps", "ES:R", "CA+"} <= set(wide.columns) and len(wide) == 2  # what dvc.yaml's sweep plots draw
    for name in ("sweep.png", "examples/ca_tride_es.png", "examples/ca_tride_ca_plus.png"):
        assert (root / "reports" / name).read_bytes()[:4] == b"\x89PNG"


def test_robustness_of_a_subset_of_attacks_reports_no_composite(pipeline, tmp_path):
    paths, _ = pipeline
    params = write_params(tmp_path, {**TINY, "attack": {**TINY["attack"], "names": ["es"]}})
    out, replicates = tmp_path / "robust.json", tmp_path / "bootstrap.csv"
    result = invoke(robustness, "--params", params, "--benign", paths["metrics_dir"] / "benign" / "pretrained.json",
                    "--attacks", paths["metrics_dir"].parent / "attacks" / "pretrained", "--out", out,
                    "--bootstrap", replicates)
    assert result.exit_code == 0
    robust = json.loads(out.read_text())
    assert robust["ERS"] is None and robust["ARS"] is None and set(robust["adversarial"]) == {"ES:D", "ES:R"}
    assert all(robust[key] is None for key in ("ERS_low", "ERS_high", "ARS_low", "ARS_high"))
    assert set(robust["adversarial_low"]) == set(robust["adversarial_high"]) == {"ES:D", "ES:R"}
    table = pd.read_csv(replicates)
    assert list(table.columns) == ["ERS", "ARS", "ES:D", "ES:R"] and table["ERS"].isna().all()
    # the resamples hang on the seed and the number of queries alone: those of the full run, whatever attacks ran
    assert table["ES:D"].tolist() == pd.read_csv(paths["metrics_dir"].parent / "bootstrap" / "pretrained.csv")["ES:D"].tolist()


def test_checkpoint_carries_resolved_params_and_state(pipeline):
    paths, _ = pipeline
    model, payload = load_checkpoint(paths["start"])
    assert payload["params"]["pretrain"]["epochs"] == 2
    assert payload["params"]["prepare"]["max_per_class"] == 30
    assert payload["state"] == {"epoch": 2, "step": 2 * 15}  # 240 train anchors / 16 pairs = 15 steps an epoch
    assert not model.training and model(torch.rand(1, 1, 28, 28)).shape == (1, 32)


def test_bad_params_exit_2_and_write_nothing(tmp_path):
    params = write_params(tmp_path, {"pretrain": {"epochs": -1}})
    out = tmp_path / "prepared"
    result = CliRunner().invoke(prepare, ["--params", params, "--out", str(out)])
    assert result.exit_code == 2
    assert result.output.strip().endswith("pretrain.epochs: must be >= 0, got -1")
    assert not out.exists()


def test_missing_input_is_one_clear_line(tmp_path, pipeline):
    paths, _ = pipeline
    result = CliRunner().invoke(
        evaluate, ["--params", paths["params"], "--data", str(tmp_path), "--checkpoint", str(paths["start"]),
                   "--metrics", str(tmp_path / "m.json")],
    )
    assert result.exit_code == 1 and "meta.json: missing; run the prepare stage first" in result.output
    assert not (tmp_path / "m.json").exists()


def test_every_command_has_help():
    for name, command in main.commands.items():
        result = CliRunner().invoke(main, [name, "--help"])
        assert result.exit_code == 0 and command.help and "--params" in result.output
