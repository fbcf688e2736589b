"""Issue 19, point 1: a command replaces only what it writes itself. A user's files beside and inside every output
of every command survive byte for byte, and a folder that no output may replace is refused before any work."""

import json
from pathlib import Path

import pytest
from saved_results import write_results
from support import TINY, printed, run, write_params

from catride_core.artifacts.files import ensure_folder_writable, write_json
from catride_core.commands.attack import attack
from catride_core.commands.curves import curves
from catride_core.commands.evaluate import evaluate
from catride_core.commands.examples import examples
from catride_core.commands.finetune import finetune
from catride_core.commands.prepare import prepare
from catride_core.commands.preset import preset
from catride_core.commands.pretrain import pretrain
from catride_core.commands.report import report
from catride_core.commands.robustness import robustness
from catride_core.commands.seeds import seeds
from catride_core.commands.sweep import sweep
from catride_core.errors import ArtifactError

#: a tiny run of every stage (one model, one attack, two eps), with the examples of that model
PIPELINE = {**TINY, "base": {"seed": 0}, "report": {"sweep_eps": [0, "8/255"], "sweep_attacks": ["es"], "sweep_queries": 4,
                               "example_models": ["pretrained"], "example_queries": 2, "example_top_k": 2}}


def plant(folder: Path, beside: str | None = None) -> dict[Path, bytes]:
    """A user's files in ``folder``: a visible and a hidden one, and for an output named ``beside`` its
    ``.<name>.backup``, the name a writer's temporary once had. Returns each path and its bytes."""
    names = ["notes.txt", ".hidden"] + ([f".{beside}.backup"] if beside else [])
    planted = {}
    for name in names:
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        planted[path] = path.read_bytes() if path.exists() else f"{path}: a user's, not the pipeline's\n".encode()
        path.write_bytes(planted[path])
    return planted


def snapshot(folder: Path) -> dict[str, bytes | None]:
    """Every file under ``folder`` (hidden ones too) and its bytes, and every folder (None)."""
    return {str(p.relative_to(folder)): p.read_bytes() if p.is_file() else None for p in sorted(folder.rglob("*"))}


def assert_survived(planted: dict[Path, bytes]) -> None:
    gone = [str(path) for path, data in planted.items() if not path.is_file() or path.read_bytes() != data]
    assert not gone, f"a user's file removed or changed: {gone}"


def exp_show(params: dict) -> list:
    """A `dvc exp show --json` of two runs of ``params`` that differ only in base.seed."""
    def revision(name: str, seed: int) -> dict:
        metrics = {"metrics/benign/pretrained.json": {"data": {"R@1": 80.0 + seed, "mAP": 50.0, "NMI": 60.0}},
                   "metrics/robustness/pretrained.json": {"data": {"ERS": 20.0 + seed, "ARS": None,
                                                                   "adversarial": {"ES:R": 1.0}}}}
        run_params = {**params, "base": {**params.get("base", {}), "seed": seed}}
        return {"rev": name, "name": name,
                "data": {"rev": name, "params": {"params.yaml": {"data": run_params}}, "metrics": metrics}}
    return [revision("workspace", 0), {**revision("main", 1), "experiments": []}]


def every_command() -> list[tuple]:
    """Every command as the pipeline runs it (the paths of dvc.yaml), with the paths it writes."""
    params, model = "params.yaml", "models/pretrained.pt"
    data = ("--data", "data/prepared")
    return [
        (prepare, ("--params", params, "--out", "data/prepared", "--no-progress"), ["data/prepared"]),
        (pretrain, ("--params", params, *data, "--checkpoint", "models/start.pt", "--log", "logs/pretrain.csv",
                    "--state", ".resume/pretrain.pt", "--no-progress"),
         ["models/start.pt", "logs/pretrain.csv", ".resume/pretrain.pt"]),
        (finetune, ("--params", params, *data, "--start", "models/start.pt", "--model", "pretrained",
                    "--checkpoint", model, "--log", "logs/finetune/pretrained.csv", "--no-progress"),
         [model, "logs/finetune/pretrained.csv"]),
        (finetune, ("--params", params, *data, "--start", "models/start.pt", "--model", "ca_tride",
                    "--checkpoint", "models/ca_tride.pt", "--log", "logs/finetune/ca_tride.csv",
                    "--state", ".resume/finetune/ca_tride.pt", "--no-progress"),
         ["models/ca_tride.pt", "logs/finetune/ca_tride.csv", ".resume/finetune/ca_tride.pt"]),
        (evaluate, ("--params", params, *data, "--checkpoint", model, "--metrics", "metrics/benign/pretrained.json"),
         ["metrics/benign/pretrained.json"]),
        (attack, ("--params", params, *data, "--checkpoint", model, "--out", "attacks/pretrained", "--no-progress"),
         ["attacks/pretrained"]),
        (robustness, ("--params", params, "--benign", "metrics/benign/pretrained.json", "--attacks",
                      "attacks/pretrained", "--out", "metrics/robustness/pretrained.json",
                      "--bootstrap", "bootstrap/pretrained.csv"),
         ["metrics/robustness/pretrained.json", "bootstrap/pretrained.csv"]),
        (sweep, ("--params", params, *data, "--checkpoint", model, "--out", "metrics/sweep/pretrained.csv",
                 "--no-progress"), ["metrics/sweep/pretrained.csv"]),
        (curves, ("--params", params, "--sweeps", "metrics/sweep", "--table", "reports/sweep.csv",
                  "--figure", "reports/sweep.png"), ["reports/sweep.csv", "reports/sweep.png"]),
        (examples, ("--params", params, *data, "--checkpoint", model, "--ranking", "reports/examples/pretrained_es.png",
                    "--targets", "reports/examples/pretrained_ca_plus.png"),
         ["reports/examples/pretrained_es.png", "reports/examples/pretrained_ca_plus.png"]),
        (report, ("--params", params, "--metrics", "metrics", "--logs", "logs", "--bootstrap", "bootstrap",
                  "--sweep", "reports/sweep.png", "--examples", "reports/examples", "--table", "reports/robustness.csv",
                  "--tradeoff", "reports/tradeoff.csv", "--markdown", "reports/index.md", "--html", "reports/index.html",
                  "--figures", "reports/figures", "--commit", "abc"),
         ["reports/robustness.csv", "reports/tradeoff.csv", "reports/index.md", "reports/index.html",
          "reports/figures"]),
        (seeds, ("--params", params, "--exp-json", "exp.json", "--table", "reports/seeds.csv",
                 "--markdown", "reports/seeds.md"), ["reports/seeds.csv", "reports/seeds.md"]),
        (preset, ("--params", params, "exp.yaml"), [params]),
    ]


#: every output folder, and a file its command writes there
FOLDER_OUTPUTS = {"data/prepared": "meta.json", "attacks/pretrained": "es.json", "reports/figures": "scores.png"}


def test_user_files_beside_and_inside_every_output_of_every_command_survive(tmp_path, monkeypatch):
    work = tmp_path / "project"
    work.mkdir()
    write_params(work, base=PIPELINE)
    (work / "exp.json").write_text(json.dumps(exp_show(PIPELINE)))
    (work / "exp.yaml").write_text("attack:\n  steps: 1\n")  # a preset that changes nothing
    monkeypatch.chdir(work)
    commands = every_command()
    planted = {}
    for _, _, outputs in commands:  # beside every output, before any is written
        for output in outputs:
            planted |= plant((work / output).parent, beside=Path(output).name)
    for command, args, outputs in commands:
        result = run(command, *args)
        assert result.exit_code == 0, f"{command.name}: {result.output}"
        assert all((work / output).exists() for output in outputs if not output.startswith(".resume")), command.name
    assert_survived(planted)
    assert not list(work.rglob("*.catride-tmp-*")), "a temporary left behind"

    # an output folder written by its command is its own to write again, its stale files removed ...
    (work / "attacks/pretrained/gtm.json").write_text("an earlier run's attack, no longer in attack.names")
    command, args, _ = next(c for c in commands if c[0] is attack)
    assert run(command, *args).exit_code == 0
    assert sorted(p.name for p in (work / "attacks/pretrained").iterdir()) == ["es.csv", "es.json"]
    # ... but one a user put a file in is refused, before any work, and kept as it is
    for folder, own_file in FOLDER_OUTPUTS.items():
        inside = plant(work / folder)
        before = snapshot(work)
        command, args, _ = next(c for c in commands if folder in c[2])
        result = run(command, *args)
        assert result.exit_code == 1, f"{command.name}: {result.output}"
        assert f"error: {folder}: holds what the pipeline did not write (.hidden, notes.txt)" in result.output
        assert snapshot(work) == before and (work / folder / own_file).is_file()
        assert_survived(inside)


def test_attack_out_a_folder_of_user_files_is_refused_and_deletes_nothing(tiny, tmp_path):
    mine = tmp_path / "mine"
    planted = plant(mine) | plant(mine / "drafts", beside="es.json")
    before = snapshot(tmp_path)
    result = run(attack, "--params", tiny["params"], "--data", tiny["data"], "--checkpoint", tiny["model"],
                 "--out", mine, "--no-progress")
    assert result.exit_code == 1
    assert printed(result) == (f"error: {mine}: holds what the pipeline did not write (.hidden, drafts, "
                                     "notes.txt); writing the output there could replace it: name a new or empty "
                                     "folder, or move these away")
    assert snapshot(tmp_path) == before
    assert_survived(planted)


def test_report_figures_into_the_reports_folder_is_refused_and_deletes_nothing(tmp_path, monkeypatch):
    root = write_results(tmp_path)
    (root / "params.yaml").write_text("models: [pretrained, tride, ca_tride]\nadaptive:\n  surrogate: pretrained\nreport:\n  example_models: [ca_tride]\n")
    reports = root / "reports"
    for name in ("sweep.png", "examples/ca_tride_es.png"):  # what other stages wrote there
        (reports / name).parent.mkdir(parents=True, exist_ok=True)
        (reports / name).write_bytes(b"\x89PNG\r\n\x1a\n" + name.encode())
    for name in ("sweep.csv", "seeds.csv", "seeds.md", "robustness.csv"):
        (reports / name).write_text(f"{name}, kept by no cache\n")
    planted = plant(reports)
    before = snapshot(root)
    monkeypatch.chdir(root)
    result = run(report, "--params", "params.yaml", "--metrics", "metrics", "--bootstrap", "bootstrap", "--logs", "logs",
                 "--sweep", "reports/sweep.png", "--examples", "reports/examples", "--table", "reports/robustness.csv",
                 "--tradeoff", "reports/tradeoff.csv", "--markdown", "reports/index.md", "--html", "reports/index.html",
                 "--figures", "reports", "--commit", "abc")
    assert result.exit_code == 1
    assert result.output.startswith("error: reports: holds what the pipeline did not write (.hidden, examples, "
                                    "notes.txt, robustness.csv, seeds.csv and 3 more)")
    assert snapshot(root) == before
    assert_survived(planted)


def test_attack_out_the_current_folder_is_refused_and_deletes_nothing(tiny, tmp_path, monkeypatch):
    mine = tmp_path / "mine"
    planted = plant(mine) | plant(mine / "photos", beside="es.json")
    before = snapshot(tmp_path)
    monkeypatch.chdir(mine)
    result = run(attack, "--params", tiny["params"], "--data", tiny["data"], "--checkpoint", tiny["model"],
                 "--out", ".", "--no-progress")
    assert result.exit_code == 1
    assert printed(result) == "error: .: the current folder, not an output folder; name a new folder for the output"
    assert snapshot(tmp_path) == before
    assert_survived(planted)


@pytest.mark.parametrize("where", ["current", "project", "home"])
def test_a_folder_no_output_may_replace_is_refused_even_when_empty(tiny, tmp_path, monkeypatch, where):
    folder = tmp_path / where
    folder.mkdir()
    if where == "project":
        (folder / "dvc.yaml").write_text("stages: {}\n")
    monkeypatch.chdir(folder if where == "current" else tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    before = snapshot(tmp_path)
    # a missing dataset: had the check come after the data were read, this would be the error
    result = run(attack, "--params", tiny["params"], "--data", tmp_path / "no-data", "--checkpoint", tiny["model"],
                 "--out", folder, "--no-progress")
    why = {"current": "the current folder", "project": "a project's root folder", "home": "a home folder"}[where]
    assert result.exit_code == 1 and printed(result) == (
        f"error: {folder}: {why}, not an output folder; name a new folder for the output")
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("folder", ["/", "/usr", "/etc", "/home/someone"])
def test_a_system_or_home_folder_is_refused_as_an_output_folder(folder):
    # checked on the function alone: a command is never pointed at a real system folder, even in a test
    with pytest.raises(ArtifactError, match=f"^{folder}: a (system|home) folder, not an output folder"):
        ensure_folder_writable(folder, {"es.json"})


def test_a_hidden_sibling_of_an_output_survives_and_a_killed_runs_temporary_does_not(tmp_path):
    planted = plant(tmp_path, beside="m.json")
    (tmp_path / ".m.json.catride-tmp-abc").write_text("{half")  # what a killed writer leaves
    write_json(tmp_path / "m.json", {"R@1": 1.0})
    assert_survived(planted)
    assert sorted(p.name for p in tmp_path.iterdir()) == [".hidden", ".m.json.backup", "m.json", "notes.txt"]
