"""Issue 19, point 4: messages that were one line but unclear now name their file or key, and say what is wrong."""

import os
import pickle
import subprocess
import sys

import pytest
from saved_results import write_results
from support import ROOT, Planted, nan_weights, one_line, run, run_report, write_params

from catride_core.commands.attack import attack
from catride_core.commands.evaluate import evaluate
from catride_core.config import parse_params


@pytest.mark.parametrize("fault", ["short", "truncated", "header_only"])
def test_report_names_a_short_or_truncated_bootstrap_csv(tmp_path, fault):
    root = write_results(tmp_path)  # 5 resamples each, as metrics/robustness/<model>.json says
    path = root / "bootstrap" / "ca_tride.csv"
    text = path.read_text()
    if fault == "short":
        path.write_text("\n".join(text.splitlines()[:3]) + "\n")
    elif fault == "truncated":
        path.write_text(text[: len(text) // 2])  # cut inside a line, as a full disk or a killed copy leaves it
    else:
        path.write_text(text.splitlines()[0] + "\n")
    result = run_report(root)
    one_line(result, 1, f"{path}: ", " resamples, ", "metrics/robustness/ca_tride.json says 5")
    assert not list(root.glob("reports/*"))  # the folder is made, before any work, to check it is writable


def test_nan_weights_in_attack_name_the_checkpoint(tiny, tmp_path):
    path, name = nan_weights(tiny["model"], tmp_path)
    result = run(attack, "--params", tiny["params"], "--data", tiny["data"], "--checkpoint", path,
                 "--out", tmp_path / "attacks", "--no-progress")
    one_line(result, 1, f"diverged.pt: the weights hold NaN or inf ({name})")
    assert not (tmp_path / "attacks").exists()


@pytest.mark.parametrize("protocol", [pickle.HIGHEST_PROTOCOL, 4, 0])
def test_a_pickled_object_reads_as_refused_and_never_runs(tiny, tmp_path, protocol):
    marker = tmp_path / "the-code-ran"
    path = tmp_path / "pickled.pt"
    path.write_bytes(pickle.dumps({"state_dict": {}, "model": Planted(marker)}, protocol=protocol))
    result = run(evaluate, "--params", tiny["params"], "--data", tiny["data"], "--checkpoint", path,
                 "--metrics", tmp_path / "m.json")
    one_line(result, 1, "pickled.pt: refused: holds more than tensors and plain data")
    assert not marker.exists() and not (tmp_path / "m.json").exists()


@pytest.mark.parametrize(("models", "fragment"), [
    ("pretrained", "models: input should be a valid list, got 'pretrained'"),
    (None, "models: input should be a valid list, got None"),
    ({"a": "b"}, "models: input should be a valid list"),
    (["pretrained", "fgsm"], "models.1: must be one of"),
    (["pretrained", "ca-tride"], "models.1: must be one of"),
    ([], "models: list should have at least 1 item"),
])
def test_a_bad_models_list_is_named_by_the_params_check(models, fragment):
    with pytest.raises(Exception, match="^params.yaml: ") as caught:
        parse_params({"models": models})
    assert fragment in str(caught.value)


@pytest.mark.slow
def test_under_torchrun_the_error_line_is_printed_once_and_ends_torchruns_report(tiny, tmp_path):
    params = write_params(tmp_path)
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "stages/evaluate.py",
         "--params", str(params), "--data", str(tiny["data"]), "--checkpoint", str(tmp_path / "missing.pt")],
        cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}, capture_output=True, text=True,
        timeout=300, check=False)
    assert result.returncode == 1
    line = f"error: {tmp_path / 'missing.pt'}: no such checkpoint"
    printed = [text.strip() for text in result.stderr.splitlines()]
    # rank 0 prints it on its own line (none at all when torchrun stopped rank 0 first, with SIGTERM, when the
    # other failed first); torchrun's report shows it as each failed rank's "traceback", the root cause's last
    assert printed.count(line) <= 1, result.stderr
    tracebacks = [text for text in printed if text.startswith("traceback : ")]
    assert tracebacks and tracebacks[-1] == f"traceback : {line}", result.stderr
    assert printed[printed.index("Root Cause (first observed failure):"):][-2] == f"traceback : {line}", result.stderr
