"""RobRank's Fashion-MNIST table in one command: the pipeline's rows on one device, sized from measured throughput.

What it does, in order:

1. reads the real Fashion-MNIST from ``--root`` (``apt-get install
   dataset-fashion-mnist``: /usr/share/datasets/fashion-mnist) with the
   project's reader, and resolves the params the run will use: this
   checkout's params.yaml with ``presets/fashion.yaml`` (RobRank's protocol)
   laid over it, ``base.device`` and ``models`` from the options;
2. times on the device, with the project's own code, a few training steps of
   every model of the rows (``training.train_epoch`` over one SPC-2 batch of
   the preset's ``2 x pairs_per_batch`` real images, the step function of
   ``defenses.build_defense`` at the model's own inner budget, the early stops
   of HM and CA-TRIDE off so that every inner step is paid: an upper bound;
   TRIDE and CA-TRIDE alternate CAP and ANP steps), the per-epoch test
   evaluation (``retrieval.evaluation.epoch_metrics``), the evaluate stage's
   metrics (``benign_metrics``) and one batch of every attack
   (``attacks.runner.run_attacks``) against the whole test split;
3. projects each row at the full protocol (``project_row``): ceil(train
   items / P) steps an epoch x epochs x step time, plus the test set
   evaluated after every epoch, plus the evaluate stage, plus the attack stage
   (the gallery embedded once, then every attack on every query at the
   measured seconds per query), and prints the projection table. Process
   starts, DVC's own work, the robustness stage's bootstrap and, on a GPU host,
   nothing else competing are left out; each row prints its real minutes
   next to its projection;
4. unless ``--dry-run``: makes ``--workspace`` a ``git clone`` of this
   repository at its HEAD (or reuses the clone it made before; any other
   existing folder is refused), applies ``catride preset fashion --root ...``
   and the options there, and runs ``dvc repro check prepare pretrain``, then
   for each model in the order given ``dvc repro finetune@M evaluate@M
   attack@M robustness@M``, a row only if its projection fits what is left of
   ``--budget-minutes`` (a row that does not is skipped and says why; a row
   still running when the budget ends is stopped, and its finished epochs are
   kept by the pipeline's resumable state). Each finished row is printed at
   once and appended to ``<workspace>/fashion_table/table.csv``; DVC's output
   of each row is in ``<workspace>/fashion_table/logs/``. Run it again with the
   same workspace to go on: DVC skips what is done.

Nothing of the protocol is reduced unless an option says so (``--max-queries``,
``--epochs``); then every printed and written row names the reduction.

Why a script in ``benchmarks/``: it prints figures measured on the machine it
runs on and drives the pipeline from outside (a clone, ``dvc repro``); it is no
stage of ``dvc.yaml`` and the library does no process or file work of this kind.
It shares its timing helpers with ``benchmarks/gpu.py``.

Usage::

    python benchmarks/fashion_table.py --root /usr/share/datasets/fashion-mnist --workspace ~/fashion-run \\
        --device cuda --budget-minutes 12
    python benchmarks/fashion_table.py --root /usr/share/datasets/fashion-mnist --device cpu --dry-run

Exit status: 0 when every row run finished, 1 when a row failed or was
stopped, 2 for a usage error (a bad option, an unusable ``--device cuda``, a
refused workspace), 130 when interrupted.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import yaml
from gpu import median_seconds, seconds, training_step

from catride_core import names
from catride_core.attacks.base import AttackBudget
from catride_core.attacks.runner import run_attacks
from catride_core.config import (
    Params,
    merge_overrides,
    parse_params,
    read_params_document,
)
from catride_core.data.prepared import TensorImageDataset
from catride_core.data.sampler import SPC2Sampler
from catride_core.data.sources import read_source
from catride_core.defenses import build_defense, training_miner
from catride_core.distributed import World
from catride_core.errors import CatrideError
from catride_core.models import build_model
from catride_core.models.embedding import embed
from catride_core.retrieval.evaluation import benign_metrics, epoch_metrics
from catride_core.retrieval.robustness import ers_reference
from catride_core.runtime import configure_backends, cuda_status

REPO = Path(__file__).resolve().parents[1]
PRESET = "fashion"
#: the workspace's folder of this script's own files: the options laid over the preset, the table, DVC's logs
OWN = "fashion_table"
SETUP_STAGES = ("check", "prepare", "pretrain")
ROW_STAGES = ("finetune", "evaluate", "attack", "robustness")
BENIGN_COLUMNS = ("R@1", "mAP", "NMI")
REFERENCE_SCORES = tuple(names.REFERENCE_SCORES)
SCORE_COLUMNS = (*names.SCORES, "ERS", *REFERENCE_SCORES, "ERS:ref")
CSV_COLUMNS = ("model", "status", "protocol", "projected_min", "minutes", *BENIGN_COLUMNS, *SCORE_COLUMNS)


class UsageError(Exception):
    """A bad option, device or workspace: one line, exit 2."""


@dataclass(frozen=True)
class Sizes:
    """The protocol's sizes that a row's time scales with."""

    train_items: int
    test_items: int
    queries: int
    pairs_per_batch: int
    epochs: int
    attacks: tuple[str, ...]


@dataclass(frozen=True)
class Throughput:
    """Seconds measured on the device.

    Attributes:
        step: model -> seconds of one training step at its inner budget.
        epoch_evaluation: the test set's evaluation after each training epoch.
        evaluation: the evaluate stage's metrics on the test set.
        gallery: embedding the test set once (every attack stage starts with it).
        attack_batch: attack -> seconds of one batch of ``batch_queries`` queries, the gallery embedding left out.
        batch_queries: queries in the timed batch.
        batch_images: images in the timed training batch (2 x pairs_per_batch unless the train split is smaller).
    """

    step: Mapping[str, float]
    epoch_evaluation: float
    evaluation: float
    gallery: float
    attack_batch: Mapping[str, float]
    batch_queries: int
    batch_images: int = 0


@dataclass(frozen=True)
class RowProjection:
    training: float
    evaluation: float
    attacks: float

    @property
    def total(self) -> float:
        return self.training + self.evaluation + self.attacks


def project_row(model: str, sizes: Sizes, measured: Throughput) -> RowProjection:
    """Seconds of one row (finetune, evaluate, attack) at ``sizes``, from the measured seconds.

    ``pretrained`` trains for zero epochs: its finetune stage evaluates the test set once.
    """
    if model == names.PRETRAINED:
        training = measured.epoch_evaluation
    else:
        steps_per_epoch = math.ceil(sizes.train_items / sizes.pairs_per_batch)
        training = sizes.epochs * (steps_per_epoch * measured.step[model] + measured.epoch_evaluation)
    per_query = sum(measured.attack_batch[name] for name in sizes.attacks) / measured.batch_queries
    return RowProjection(training, measured.evaluation, measured.gallery + sizes.queries * per_query)


def choose_rows(projected: Sequence[tuple[str, float]], available: float | None) -> list[tuple[str, str | None]]:
    """(model, None) for each row that runs, (model, reason) for each skipped: rows are taken in order while
    their projected seconds fit what is left of ``available`` (None: no budget, every row runs)."""
    chosen: list[tuple[str, str | None]] = []
    left = available
    for model, need in projected:
        if left is None or need <= left:
            chosen.append((model, None))
            left = None if left is None else left - need
        else:
            chosen.append((model, f"projected {minutes(need)}, {minutes(max(left, 0.0))} of the budget left"))
    return chosen


def minutes(value: float) -> str:
    return f"{value / 60:,.1f} min" if value < 3 * 3600 else f"{value / 3600:,.1f} h"


# --- options, device, params ------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", required=True, help="folder of the four official IDX files (.gz or not)")
    parser.add_argument("--workspace", help="the clone to run the pipeline in (required unless --dry-run)")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cuda", help="where everything runs [cuda]")
    parser.add_argument("--budget-minutes", type=float, help="run only the rows that fit (default: every row)")
    parser.add_argument("--models", help="comma-separated rows, in order [the preset's models]")
    parser.add_argument("--dry-run", action="store_true", help="measure and print the projection, run no row")
    parser.add_argument("--max-queries", type=int, help="REDUCES the protocol: attack only the first N test images")
    parser.add_argument("--epochs", type=int, help="CHANGES the protocol: fine-tune for N epochs instead of the preset's")
    parser.add_argument("--timing-steps", type=int, default=2, help="timed training steps per model, after one warm-up")
    args = parser.parse_args(argv)
    if not args.dry_run and not args.workspace:
        parser.error("--workspace is required unless --dry-run")
    for option in ("max_queries", "epochs", "timing_steps"):
        if getattr(args, option) is not None and getattr(args, option) < 1:
            parser.error(f"--{option.replace('_', '-')} must be >= 1")
    if args.budget_minutes is not None and args.budget_minutes <= 0:
        parser.error("--budget-minutes must be > 0")
    return args


def strict_device(name: str) -> torch.device:
    """The device asked for; CUDA must be present and work, or this is a usage error (never a silent CPU run)."""
    if name == "cpu":
        return torch.device("cpu")
    usable, reason = cuda_status()
    if not usable:
        raise UsageError(f"--device cuda: CUDA is not usable here: {reason}; pass --device cpu to run on the CPU")
    try:
        torch.ones(1, device="cuda").add_(1).item()
    except RuntimeError as exc:
        raise UsageError(f"--device cuda: CUDA is present but unusable ({str(exc).splitlines()[0]})") from None
    configure_backends(False)  # the stages' deterministic IEEE fp32 (runtime.configure_backends)
    return torch.device("cuda")


def preset_params(root: Path) -> tuple[dict, Params]:
    """This checkout's params.yaml with the preset and ``--root`` laid over it: the document and its params."""
    document = read_params_document(REPO / "params.yaml")
    merge_overrides(document, read_params_document(REPO / "presets" / f"{PRESET}.yaml"))
    merge_overrides(document, {"prepare": {"root": str(root)}})
    return document, parse_params(document, source=f"params.yaml with presets/{PRESET}.yaml")


def option_overrides(args: argparse.Namespace, protocol: Params) -> dict:
    """What the options lay over the preset: the device, the rows, and any reduction asked for."""
    overrides: dict = {"base": {"device": args.device}}
    if args.models:
        models = [name.strip() for name in args.models.split(",") if name.strip()]
        # the report draws examples of models in `models` only (a params rule); this script runs no report
        shown = [name for name in protocol.report.example_models if name in models] or models[:1]
        overrides |= {"models": models, "report": {"example_models": shown}}
    if args.max_queries is not None:
        overrides["attack"] = {"max_queries": args.max_queries}
    if args.epochs is not None:
        overrides["finetune"] = {"epochs": args.epochs}
    return overrides


def reductions(params: Params, protocol: Params, test_items: int) -> str:
    """'full protocol', or what the options changed in it (said on every row)."""
    cut = []
    if params.attack.max_queries is not None and params.attack.max_queries < test_items:
        cut.append(f"attacks on {params.attack.max_queries} of {test_items} queries")
    if params.finetune.epochs != protocol.finetune.epochs:
        cut.append(f"{params.finetune.epochs} epochs, not {protocol.finetune.epochs}")
    return "REDUCED: " + ", ".join(cut) if cut else "full protocol"


# --- measuring ----------------------------------------------------------------------------------------------------


def measure(params: Params, images: np.ndarray, labels: np.ndarray, is_test: np.ndarray, models: Sequence[str],
            device: torch.device, timing_steps: int) -> Throughput:
    """Time every part of a row on ``device`` (see the module docstring), on the real images."""
    seed, evaluation, cfg = params.base.seed, params.evaluate, params.finetune
    # the early stops off: every inner step is paid, so the projection is an upper bound
    cfg = cfg.model_copy(update={"hm": cfg.hm.model_copy(update={"stop_change_below": 0.0}),
                                 "ca_tride": cfg.ca_tride.model_copy(update={"stop_below": None})})
    torch.manual_seed(seed)
    model = build_model(params.pretrain.arch, params.pretrain.embedding_dim).to(device)
    train_labels = labels[~is_test]
    batch = next(iter(SPC2Sampler(train_labels, cfg.pairs_per_batch, seed)))
    train_images = torch.from_numpy(images[~is_test][batch]).float().div_(255).to(device)
    batch_labels = torch.as_tensor(train_labels[batch]).to(device)

    step = {}
    for name in dict.fromkeys(models):
        if name == names.PRETRAINED:
            continue
        optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        step_fn = build_defense(name, cfg, evaluation.diagnostic_inverse_temperature)
        runs = [training_step(step_fn, training_miner(name, cfg), model, optimizer, train_images, batch_labels,
                              device, params.base.precision, seed, parity) for parity in (0, 1)]
        runs[0]()  # warm-up
        # consecutive global steps alternate parity: TRIDE's CAP and ANP steps, equally often
        step[name] = sum(seconds(runs[k % 2], device)[0] for k in range(timing_steps)) / timing_steps

    test_set = TensorImageDataset(images[is_test], labels[is_test])
    epoch_evaluation, _ = seconds(lambda: epoch_metrics(model, test_set, evaluation.batch_size, device,
                                                        evaluation.diagnostic_inverse_temperature, seed), device)
    evaluate, _ = seconds(lambda: benign_metrics(model, test_set, evaluation.batch_size, device, evaluation.recall_at,
                                                 evaluation.block_size, evaluation.diagnostic_inverse_temperature,
                                                 seed, World(), evaluation.nmi_seeds), device)

    attack = params.attack
    budget = AttackBudget(eps=attack.eps, step_size=attack.step_size, steps=attack.steps,
                          random_start=attack.random_start, batch_size=attack.batch_size,
                          candidates_per_query=attack.candidates_per_query,
                          queries_per_candidate=attack.queries_per_candidate)
    batch_queries = min(attack.batch_size, len(test_set))
    gallery, _ = median_seconds(lambda: embed(model, test_set, attack.batch_size, device), device, 1, 1)
    test_labels = torch.as_tensor(test_set.labels)
    attack_batch = {
        name: max(seconds(lambda name=name: run_attacks([name], model, test_set, test_labels, budget, seed,
                                                        max_queries=batch_queries), device)[0] - gallery, 1e-9)
        for name in attack.names
    }
    return Throughput(step, epoch_evaluation, evaluate, gallery, attack_batch, batch_queries, len(batch))


def inner_steps(params: Params, model: str) -> str:
    if model not in names.ADVERSARIAL_DEFENSES:
        return "-"
    own = getattr(params.finetune, model).steps
    return str(params.finetune.steps if own is None else own)


def print_projection(params: Params, sizes: Sizes, measured: Throughput, models: Sequence[str], setup: float,
                     protocol: str, where: str) -> dict[str, RowProjection]:
    print(f"device: {where}; torch {torch.__version__}; {protocol}")
    print(f"measured: training steps of {measured.batch_images} images (mean of steps after a warm-up), the "
          f"test set ({sizes.test_items} images) evaluated per epoch {measured.epoch_evaluation:.1f} s and by the "
          f"evaluate stage {measured.evaluation:.1f} s, embedded {measured.gallery:.1f} s; one batch of "
          f"{measured.batch_queries} queries per attack\n")
    print(f"| row | inner steps | step time | training: {sizes.epochs} epochs x "
          f"{math.ceil(sizes.train_items / sizes.pairs_per_batch)} steps | evaluate | attacks: "
          f"{len(sizes.attacks)} x {sizes.queries} queries | total | protocol |")
    print("|---|---|---|---|---|---|---|---|")
    rows = {model: project_row(model, sizes, measured) for model in models}
    for model, row in rows.items():
        step = f"{measured.step[model]:.3f} s" if model in measured.step else "-"
        print(f"| {model} | {inner_steps(params, model)} | {step} | {minutes(row.training)} | "
              f"{minutes(row.evaluation)} | {minutes(row.attacks)} | **{minutes(row.total)}** | {protocol} |")
    attack_line = ", ".join(f"{name} {measured.batch_queries / taken:,.1f}" for name, taken in measured.attack_batch.items())
    print(f"\nattack throughput (queries/s, {params.attack.steps} steps): {attack_line}")
    print(f"setup (reading the dataset, prepare, pretrain with 0 epochs): about {minutes(setup)}; "
          f"all rows: {minutes(setup + sum(row.total for row in rows.values()))}")
    return rows


# --- the workspace and the rows -------------------------------------------------------------------------------------


def git(*args: str, cwd: Path) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout.strip()


def check_workspace(folder: Path) -> bool:
    """Whether ``folder`` is this script's clone to reuse (False: it is to be made); anything else is refused."""
    if not folder.exists() or (folder.is_dir() and not any(folder.iterdir())):
        return False
    refusal = f"--workspace {folder}: exists and is not a clone of {REPO} made by this script; give a new folder"
    if not folder.is_dir():
        raise UsageError(refusal)
    try:
        top = git("rev-parse", "--show-toplevel", cwd=folder)
        origin = git("config", "--get", "remote.origin.url", cwd=folder)
    except subprocess.CalledProcessError:
        raise UsageError(refusal) from None
    if Path(top).resolve() != folder.resolve() or origin != str(REPO) or not (folder / OWN).is_dir():
        raise UsageError(refusal)
    return True


def child_env(workspace: Path) -> dict[str, str]:
    """This interpreter's environment for DVC and the stages: its ``python`` first, the clone's code imported."""
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    return {**os.environ, "PATH": path, "PYTHONPATH": str(workspace)}


def prepare_workspace(folder: Path, reuse: bool, root: Path, overrides: dict) -> None:
    """Clone (or reuse), then lay the preset and the options over the clone's params.yaml."""
    head = git("rev-parse", "HEAD", cwd=REPO)
    if reuse:
        at = git("rev-parse", "HEAD", cwd=folder)
        print(f"workspace {folder}: reused (at {at[:10]}" + ("" if at == head else f"; this checkout is at {head[:10]}")
              + "); finished stages are skipped by DVC")
    else:
        if git("status", "--porcelain", cwd=REPO):
            print(f"note: {REPO} has uncommitted changes; the clone holds its last commit {head[:10]}")
        subprocess.run(["git", "clone", "--quiet", str(REPO), str(folder)], check=True)
        git("checkout", "--quiet", "--detach", head, cwd=folder)
        (folder / OWN / "logs").mkdir(parents=True)
        print(f"workspace {folder}: cloned at {head[:10]}")
    env = child_env(folder)
    # DVC's site cache (its index and locks) inside the workspace, not in /var/tmp: nothing is written outside it
    subprocess.run([sys.executable, "-m", "dvc", "config", "--local", "core.site_cache_dir",
                    str(folder.resolve() / ".dvc" / "site-cache")], cwd=folder, env=env, check=True)
    options = folder / OWN / "options.yaml"
    options.write_text(yaml.safe_dump(overrides, sort_keys=False))
    for preset in ([PRESET, "--root", str(root)], [str(options)]):
        subprocess.run([sys.executable, "-m", "catride_core.cli", "preset", *preset], cwd=folder, env=env, check=True,
                       stdout=subprocess.DEVNULL)


def repro(workspace: Path, targets: Sequence[str], log: Path, deadline: float | None) -> str:
    """Run ``dvc repro`` on ``targets``; 'done', 'failed (exit N)' or 'stopped: out of time'.

    DVC runs in its own process group; at the deadline (or on Ctrl-C) the group gets SIGINT, as a terminal's
    Ctrl-C would, so the running stage stops cleanly and its resumable state is kept.
    """
    with log.open("a") as out:
        process = subprocess.Popen([sys.executable, "-m", "dvc", "repro", *targets], cwd=workspace,
                                   env=child_env(workspace), stdout=out, stderr=subprocess.STDOUT,
                                   start_new_session=True)
        try:
            code = process.wait(None if deadline is None else max(deadline - time.monotonic(), 1.0))
        except (subprocess.TimeoutExpired, KeyboardInterrupt) as stop:
            stop_group(process)
            if isinstance(stop, KeyboardInterrupt):
                raise
            return "stopped: out of time"
    return "done" if code == 0 else f"failed (exit {code})"


def stop_group(process: subprocess.Popen) -> None:
    for sig, wait in ((signal.SIGINT, 120), (signal.SIGTERM, 30), (signal.SIGKILL, 30)):
        os.killpg(process.pid, sig)
        try:
            process.wait(wait)
            return
        except subprocess.TimeoutExpired:
            continue


def row_values(workspace: Path, model: str) -> dict[str, float | None]:
    """R@1, mAP, NMI and every attack score, ERS, the reference-rule scores and ERS:ref (ERS with them) of a row."""
    benign = json.loads((workspace / "metrics" / "benign" / f"{model}.json").read_text())
    robust = json.loads((workspace / "metrics" / "robustness" / f"{model}.json").read_text())
    adversarial = robust.get("adversarial", {})
    values = {key: benign.get(key) for key in BENIGN_COLUMNS}
    values |= {score: adversarial.get(score) for score in (*names.SCORES, *REFERENCE_SCORES)}
    values["ERS"] = robust.get("ERS")
    reference = robust.get("ERS:ref")
    if reference is None and values["ERS"] is not None:
        reference = ers_reference(adversarial)
    values["ERS:ref"] = reference
    return values


def cell(column: str, value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.3f}" if column in ("TMA", "ES:D") else f"{value:.1f}"


def record(table: Path, row: dict[str, object]) -> None:
    new = not table.exists()
    with table.open("a", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=CSV_COLUMNS)
        if new:
            writer.writeheader()
        writer.writerow(row)


def run_rows(args: argparse.Namespace, overrides: dict, rows: dict[str, RowProjection], protocol: str,
             started: float) -> int:
    """The setup stages, then each row that fits what is left of the budget (measured from ``started``)."""
    workspace = Path(args.workspace).expanduser().resolve()
    deadline = None if args.budget_minutes is None else started + 60 * args.budget_minutes
    prepare_workspace(workspace, check_workspace(workspace), Path(args.root).expanduser().resolve(), overrides)
    logs, table = workspace / OWN / "logs", workspace / OWN / "table.csv"
    print(f"\nsetup: dvc repro {' '.join(SETUP_STAGES)} (log {logs / 'setup.log'})", flush=True)
    status = repro(workspace, SETUP_STAGES, logs / "setup.log", deadline)
    if status != "done":
        print(f"setup {status}; see {logs / 'setup.log'}")
        return 1
    left = None if deadline is None else deadline - time.monotonic()
    plan = choose_rows([(model, row.total) for model, row in rows.items()], left)
    for model, reason in plan:
        if reason:
            print(f"{model}: skipped, {reason}")
    header = ("model", "protocol", "minutes (projected)", *BENIGN_COLUMNS, *SCORE_COLUMNS)
    print("\n| " + " | ".join(header) + " |\n|" + "---|" * len(header), flush=True)
    failed = False
    for model, reason in plan:
        if reason:
            continue
        projected = rows[model].total
        left = None if deadline is None else deadline - time.monotonic()
        if left is not None and projected > left:
            print(f"{model}: skipped, projected {minutes(projected)}, {minutes(max(left, 0.0))} of the budget left")
            continue
        begin = time.monotonic()
        status = repro(workspace, [f"{stage}@{model}" for stage in ROW_STAGES], logs / f"{model}.log", deadline)
        taken = time.monotonic() - begin
        values = row_values(workspace, model) if status == "done" else {}
        record(table, {"model": model, "status": status, "protocol": protocol, "projected_min": round(projected / 60, 1),
                       "minutes": round(taken / 60, 1), **values})
        if status != "done":
            failed = True
            print(f"{model}: {status} after {minutes(taken)}; see {logs / f'{model}.log'}", flush=True)
            continue
        cells = [cell(column, values.get(column)) for column in (*BENIGN_COLUMNS, *SCORE_COLUMNS)]
        print(f"| {model} | {protocol} | {taken / 60:.1f} ({projected / 60:.1f}) | " + " | ".join(cells) + " |",
              flush=True)
    print(f"\nrows written to {table}")
    return 1 if failed else 0


def main(argv: Sequence[str] | None = None) -> int:
    started = time.monotonic()
    args = parse_args(argv)
    try:
        device = strict_device(args.device)
        if args.workspace and not args.dry_run:
            check_workspace(Path(args.workspace).expanduser().resolve())
        root = Path(args.root).expanduser()
        document, preset = preset_params(root.resolve())
        overrides = option_overrides(args, preset)
        params = parse_params(merge_overrides(document, overrides), source="the preset with the options")
        read_start = time.monotonic()
        source = read_source("fashion", str(root))
        reading = time.monotonic() - read_start
    except (UsageError, CatrideError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    is_test = np.asarray(source.is_test, dtype=bool)
    test_items = int(is_test.sum())
    queries = test_items if params.attack.max_queries is None else min(params.attack.max_queries, test_items)
    sizes = Sizes(int((~is_test).sum()), test_items, queries, params.finetune.pairs_per_batch, params.finetune.epochs,
                  tuple(params.attack.names))
    protocol = reductions(params, preset, test_items)
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    measured = measure(params, source.images, np.asarray(source.labels), is_test, params.models, device,
                       args.timing_steps)
    setup = 2 * reading + measured.epoch_evaluation
    rows = print_projection(params, sizes, measured, params.models, setup, protocol, where)
    if args.dry_run:
        return 0
    try:
        return run_rows(args, overrides, rows, protocol, started)
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\ninterrupted: the rows printed above are in the workspace's table.csv; run again to go on",
              file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
