"""The contract between dvc.yaml, params.yaml and the code.

- every stage command is a CLI command taking the options dvc.yaml passes, and
  every path it writes is declared and on its command line;
- every stage's `deps` cover exactly the catride_core modules its script loads
  (imported in a fresh interpreter), so editing a module reruns the stages that
  run it and no other;
- every params key a stage declares exists (the keys a command reads are
  checked against its declaration in tests/test_cli.py, on a real run).
"""

from __future__ import annotations

import ast
import json
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from saved_results import write_logs
from support import DVC, PARAMS, ROOT, STAGES, dvc

from catride_core import cli
from catride_core.config import Params
from catride_core.names import DEFENSES, MODELS


def script_of(stage):
    # `python -m`, not `python stages/x.py`: with -m the code is imported from the stage's working folder,
    # which under `dvc exp run --queue/--temp` is the experiment's copy, not the checkout the venv points at
    words = shlex.split(stage["cmd"])
    assert words[:2] == ["python", "-m"] and words[2].startswith("stages."), stage["cmd"]
    return f"stages/{words[2].removeprefix('stages.')}.py"


def declared_paths(stage):
    paths = []
    for kind in ("outs", "metrics", "plots"):
        for entry in stage.get(kind, []):
            paths.append(next(iter(entry)) if isinstance(entry, dict) else entry)
    return paths


@pytest.mark.parametrize("name", STAGES)
def test_stage_command_is_a_cli_command_with_those_options(name):
    stage = STAGES[name]
    words = shlex.split(stage["cmd"])
    script = ROOT / script_of(stage)
    command_name = script.stem
    assert f"from catride_core.commands.{command_name} import {command_name}" in script.read_text()
    command = cli.main.commands[command_name]
    known = {opt for p in command.params for opt in p.opts + p.secondary_opts}
    options = [w for w in words[2:] if w.startswith("--")]
    assert set(options) <= known, f"{name}: options not in `catride {command_name}`: {set(options) - known}"


@pytest.mark.parametrize("name", STAGES)
def test_every_written_path_is_declared_and_passed(name):
    stage = STAGES[name]
    for path in declared_paths(stage):
        assert path in stage["cmd"], f"{name}: declared output {path} is not on its command line"
    produced = {path for other in STAGES.values() for path in declared_paths(other)}
    for dep in stage.get("deps", []):
        is_output = any(path == dep or path.startswith(dep + "/") for path in produced)
        assert is_output or (ROOT / dep).exists(), f"{name}: dependency {dep} is neither code nor a stage output"


@pytest.mark.parametrize("name", STAGES)
def test_declared_params_exist(name):
    for key in STAGES[name].get("params", []):
        node = PARAMS
        for part in key.split("."):
            assert part in node, f"{name}: params key {key} is not in params.yaml"
            node = node[part]


def test_dvc_lock_names_only_the_stages_of_dvc_yaml():
    # DVC keeps the entries of removed or renamed stages: they mislead a reader, and a bigger lock file widens the
    # window in which a killed `dvc repro` leaves it truncated (README, "When things go wrong")
    lock = yaml.safe_load((ROOT / "dvc.lock").read_text())
    stale = sorted(set(lock["stages"]) - set(STAGES))
    assert not stale, f"dvc.lock holds {len(stale)} entries of stages dvc.yaml no longer has, e.g. {stale[:3]}"
    assert set(lock["stages"]) == set(STAGES), "a stage of dvc.yaml has never been run and committed"


def test_every_model_fans_out_through_every_stage_kind():
    for model in PARAMS["models"]:
        assert {f"{kind}@{model}" for kind in ("finetune", "evaluate", "attack", "robustness")} <= set(STAGES)
    assert sum(name.startswith("attack@") for name in STAGES) == len(PARAMS["models"])  # one attack process a model


def test_no_stage_body_is_written_twice():
    bodies = [json.dumps(stage.get("do", stage), sort_keys=True) for stage in DVC["stages"].values()]
    assert len(bodies) == len(set(bodies))
    scripts = [script_of(stage.get("do", stage)) for stage in DVC["stages"].values()]
    assert len(scripts) == len(set(scripts)), "a stage kind is defined twice"


def test_params_yaml_lists_every_field_with_its_default():
    # params.yaml is the documentation of the defaults: every field appears, with the model's default
    defaults = Params().model_dump(mode="json")

    def keys(node, prefix=""):
        for key, value in node.items():
            yield prefix + key
            if isinstance(value, dict):
                yield from keys(value, prefix + key + ".")

    assert set(keys(PARAMS)) == set(keys(defaults))
    assert Params.model_validate(PARAMS) == Params()


# --- code dependencies -------------------------------------------------------------------------

TRACE = """
import importlib.util, json, sys
spec = importlib.util.spec_from_file_location("stage_script", sys.argv[1])
spec.loader.exec_module(importlib.util.module_from_spec(spec))
print(json.dumps(sorted(m.__file__ for n, m in sys.modules.items() if n.split(".")[0] == "catride_core")))
"""


def is_code_free(path: Path) -> bool:
    """A module that holds nothing but a docstring and constants (``__version__``): editing it changes no result."""
    tree = ast.parse(path.read_text())
    return all(isinstance(node, (ast.Expr, ast.Assign)) and not isinstance(getattr(node, "value", None), ast.Call)
               for node in tree.body)


def function_level_imports(path: Path) -> set[str]:
    """catride_core modules a file imports inside functions (a fresh import would not load them)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for inner in ast.walk(node):
                if isinstance(inner, ast.ImportFrom) and (inner.module or "").startswith("catride_core"):
                    found.add(inner.module)
                elif isinstance(inner, ast.Import):
                    found |= {alias.name for alias in inner.names if alias.name.startswith("catride_core")}
    return found


@pytest.fixture(scope="module")
def loaded_code():
    """Script -> the catride_core files (relative to the repo) a fresh interpreter loads to import it."""
    scripts = sorted({script_of(stage) for stage in STAGES.values()})
    runs = {s: subprocess.Popen([sys.executable, "-c", TRACE, str(ROOT / s)], cwd=ROOT, stdout=subprocess.PIPE, text=True)
            for s in scripts}
    loaded = {}
    for script, run in runs.items():
        out, _ = run.communicate(timeout=120)
        assert run.returncode == 0, f"importing {script} failed"
        files = [Path(f).resolve().relative_to(ROOT) for f in json.loads(out)]
        loaded[script] = {f.as_posix() for f in files if not is_code_free(ROOT / f)}
    return loaded


def covered(module: str, deps: list[str]) -> bool:
    return any(module == dep or module.startswith(dep.rstrip("/") + "/") for dep in deps)


@pytest.mark.parametrize("name", STAGES)
def test_stage_deps_cover_every_module_its_script_loads(name, loaded_code):
    stage = STAGES[name]
    missing = sorted(m for m in loaded_code[script_of(stage)] if not covered(m, stage["deps"]))
    assert not missing, f"{name}: loads {missing} but does not declare them in dvc.yaml deps"


@pytest.mark.parametrize("name", STAGES)
def test_stage_declares_no_code_it_does_not_load(name, loaded_code):
    # a folder dep stands for every module in it: each must be loaded, or a change there reruns the stage for nothing
    stage = STAGES[name]
    loaded = loaded_code[script_of(stage)] | {script_of(stage)}
    declared = set()
    for dep in (d for d in stage["deps"] if d.startswith(("catride_core", "stages"))):
        path = ROOT / dep
        files = sorted(path.rglob("*.py")) if path.is_dir() else [path]
        declared |= {f.relative_to(ROOT).as_posix() for f in files if not is_code_free(f)}
    unused = sorted(declared - loaded)
    assert not unused, f"{name}: declares {unused} but never loads them (a change there would rerun it for nothing)"


def test_no_catride_module_is_imported_inside_a_function():
    # a fresh import must see every module a stage can run, or the trace above would miss it
    lazy = {str(p.relative_to(ROOT)): mods for p in (ROOT / "catride_core").rglob("*.py")
            if (mods := function_level_imports(p))}
    assert not lazy, lazy


def test_stage_scripts_import_only_their_own_command():
    for script in (ROOT / "stages").glob("*.py"):
        imports = [n for n in ast.walk(ast.parse(script.read_text())) if isinstance(n, (ast.Import, ast.ImportFrom))]
        assert [i.module for i in imports] == [f"catride_core.commands.{script.stem}"], script



# --- DVC plots ---------------------------------------------------------------------------------


def test_every_finetune_plot_lists_each_model_that_logs_its_column():
    # a folder cannot be a plot's data source, so each model's log is listed; `pretrained` logs only epoch 0
    # (R@1, collapseness), `none` has no inner PGD; the row order follows names.MODELS
    plots = {name: spec for entry in DVC["plots"] for name, spec in entry.items()}
    logged = {"finetune_r1": MODELS, "finetune_collapseness": MODELS, "finetune_loss": DEFENSES,
              "finetune_inner_pgd": DEFENSES[1:]}
    for name, models in logged.items():
        assert list(plots[name]["y"]) == [f"logs/finetune/{m}.csv" for m in models], name


@pytest.mark.slow
def test_dvc_plots_show_lists_the_training_curves_the_tradeoff_and_the_sweep(tmp_path):
    # the logs and the trade-off table in their real formats (tests/saved_results.py), no repro
    shutil.copy(ROOT / "dvc.yaml", tmp_path)
    shutil.copy(ROOT / "params.yaml", tmp_path)
    write_logs(tmp_path, MODELS)
    (tmp_path / "reports").mkdir()
    (tmp_path / "reports" / "tradeoff.csv").write_text("model,R@1,ERS,ARS\npretrained,97.5,13.1,10.8\nhm,97.7,47.5,45.4\n")
    (tmp_path / "metrics" / "sweep").mkdir(parents=True)
    for model in PARAMS["models"]:  # the sweep stage's format: one row per eps, one column per score
        (tmp_path / "metrics" / "sweep" / f"{model}.csv").write_text("eps,ES:D,ES:R,CA+\n0,0,98,50\n0.302,1.4,1.0,3.5\n")
    dvc(tmp_path, "init", "--no-scm", "-q")
    shown = json.loads(dvc(tmp_path, "plots", "show", "--json").stdout)
    assert not shown.get("errors"), shown["errors"]
    assert {"pretrain_curve", "finetune_r1", "finetune_collapseness", "finetune_loss", "finetune_inner_pgd",
            "tradeoff", "sweep_robust_r1", "sweep_ca_plus"} <= set(shown["data"])
    assert len(shown["data"]["sweep_robust_r1"][0]["content"]["data"]["values"]) == 2 * len(PARAMS["models"])
    # finetune_r1 holds every model's epochs: pretrained's epoch 0 and two epochs of each defense
    assert len(shown["data"]["finetune_r1"][0]["content"]["data"]["values"]) == 1 + 2 * len(DEFENSES)
    assert len(shown["data"]["tradeoff"][0]["content"]["data"]["values"]) == 2 * 2  # ERS and ARS per model


def test_sweep_plots_draw_every_model_of_params():
    # DVC reads no folder as a plot source, so dvc.yaml names each model's sweep file: keep them in step
    for plot in DVC["plots"]:
        (name, definition), = plot.items()
        if name.startswith("sweep_"):
            assert list(definition["y"]) == [f"metrics/sweep/{m}.csv" for m in PARAMS["models"]], name


# --- layers ------------------------------------------------------------------------------------

#: the core's layers, bottom first: a module may import its own layer and those below, never one above.
#: ``artifacts`` (the pipeline's file I/O) takes the data and model layer's types and is used by the commands alone.
LAYERS = [
    {"__init__", "names", "errors", "config", "runtime", "distances", "progress"},
    {"data", "models", "losses", "distributed", "artifacts"},
    {"retrieval"},
    {"attacks"},
    {"defenses", "training"},
    {"report"},
    {"commands", "cli"},
]
RANK = {part: rank for rank, layer in enumerate(LAYERS) for part in layer}


def core_imports(path: Path) -> set[str]:
    """The catride_core modules a file imports, anywhere in it (type-checking imports too)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("catride_core"):
            found |= {node.module} if node.module != "catride_core" else {f"catride_core.{a.name}" for a in node.names}
        elif isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.startswith("catride_core")}
    return found


def layer_of(module: str) -> str:
    """``catride_core.attacks.runner`` -> ``attacks``; ``catride_core/names.py`` -> ``names``."""
    parts = module.replace("/", ".").removesuffix(".py").split(".")
    return parts[1] if len(parts) > 1 else "__init__"


CORE_FILES = sorted((ROOT / "catride_core").rglob("*.py"))


def test_every_core_module_has_a_layer():
    assert {layer_of(p.relative_to(ROOT).as_posix()) for p in CORE_FILES} <= set(RANK)


@pytest.mark.parametrize("path", CORE_FILES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_imports_run_one_way_down_the_layers(path):
    own = layer_of(path.relative_to(ROOT).as_posix())
    above = sorted(m for m in core_imports(path) if RANK[layer_of(m)] > RANK[own])
    assert not above, f"{path.relative_to(ROOT)} (layer {own}) imports {above}, which sit above it"


def test_only_the_commands_do_the_pipelines_file_io():
    users = {p.relative_to(ROOT).as_posix() for p in CORE_FILES
             if layer_of(p.relative_to(ROOT).as_posix()) not in {"artifacts", "commands"}
             and any(layer_of(m) == "artifacts" for m in core_imports(p))}
    assert not users, f"core modules reading or writing the pipeline's files: {sorted(users)}"


def test_the_layer_check_catches_an_upward_import(tmp_path):
    # the check above would pass vacuously if it parsed nothing: one planted upward import must be seen
    planted = tmp_path / "planted.py"
    planted.write_text("from catride_core.attacks.runner import run_attacks\nimport catride_core.report.content\n")
    assert core_imports(planted) == {"catride_core.attacks.runner", "catride_core.report.content"}
    assert RANK[layer_of("catride_core.attacks.runner")] > RANK[layer_of("catride_core/retrieval/examples.py")]


def test_the_report_declares_every_protocol_key_of_every_preset():
    # the report compares these keys of the run with presets/<dataset>.yaml: a change to one must rerun it
    from catride_core.report.published import preset_keys

    declared = STAGES["report"]["params"]
    assert {"docs/published.csv", "presets"} <= set(STAGES["report"]["deps"])
    for preset in sorted((ROOT / "presets").glob("*.yaml")):
        keys = list(preset_keys(yaml.safe_load(preset.read_text())))
        assert "prepare.dataset" in keys and not any(k == "models" or k.startswith(("report.", "prepare.root"))
                                                     for k in keys)
        missing = [k for k in keys if not any(k == d or k.startswith(d + ".") for d in declared)]
        assert not missing, f"{preset.name}: the report stage does not declare {missing}"
