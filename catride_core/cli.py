"""Command-line entry points: one click command per pipeline stage.

Each command is the thin shell around the core: load its params section,
read its inputs, call core functions, write its outputs (atomically, to the
paths given on its command line). ``stages/*.py`` are what dvc.yaml runs; they
only call these commands.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click
import pandas as pd
import torch

from catride_core import artifacts, reporting
from catride_core.attacks import ATTACKS, AttackBudget, AttackCheckError, run_attack
from catride_core.config import Params, ParamsError, load_params, merge_overrides, parse_params
from catride_core.config import DEFENSES
from catride_core.data import DataError, build_dataset, choose_split, limit_per_class, read_source, stack_split
from catride_core.defenses import build_defense, collapse_diagnostics, training_miner
from catride_core.models import build_model
from catride_core.retrieval.metrics import recall_at_1, retrieval_metrics
from catride_core.retrieval.robustness import robustness_summary
from catride_core.runtime import resolve_device, seed_everything
from catride_core.training import benign_step, embed, fit

PARAMS_OPTION = click.option(
    "--params", "params_path", type=click.Path(dir_okay=False), default="params.yaml", show_default=True,
    help="the pipeline's params file",
)
DATA_OPTION = click.option(
    "--data", "data_dir", type=click.Path(exists=True, file_okay=False), required=True, help="prepared dataset folder"
)
PROGRESS_OPTION = click.option("--progress/--no-progress", default=True, show_default=True, help="show progress bars")


class StageCommand(click.Command):
    """A click command that turns the project's known errors into one line on stderr.

    Bad params exit with code 2 (like a usage error); a missing or broken input
    file exits with code 1. Either way the stage has written nothing.
    """

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except ParamsError as exc:
            click.echo(f"error: {exc}", err=True)
            ctx.exit(2)
        except (DataError, FileNotFoundError, ValueError, AttackCheckError) as exc:
            click.echo(f"error: {exc}", err=True)
            ctx.exit(1)


def stage(function: Any) -> click.Command:
    """Decorator: a pipeline stage command (known errors reported as one line)."""
    return click.command(cls=StageCommand)(function)


def _start(params_path: str) -> tuple[Params, torch.device]:
    """What every computing stage does first: validate the params, seed, pick the device."""
    params = load_params(params_path)
    seed_everything(params.base.seed)
    return params, resolve_device(params.base.device)


def _resolved(params: Params, *sections: str) -> dict[str, Any]:
    """The params sections an output depends on, as plain JSON-able data."""
    return {name: getattr(params, name).model_dump(mode="json", by_alias=True) for name in sections}


def _rounded(values: dict[str, float]) -> dict[str, float]:
    """Scores rounded to 4 decimals, so equal results give byte-identical JSON."""
    return {key: round(float(value), 4) for key, value in values.items()}


@stage
@PARAMS_OPTION
@click.option("--out", "out_dir", type=click.Path(file_okay=False), required=True, help="folder to write the prepared dataset to")
def prepare(params_path: str, out_dir: str) -> None:
    """Read the dataset named by prepare.dataset, split it, write a compact prepared copy."""
    params = load_params(params_path)
    cfg = params.prepare
    source = limit_per_class(read_source(cfg.dataset, cfg.root), cfg.max_per_class, params.base.seed)
    is_test = choose_split(source, cfg.split, cfg.test_fraction, params.base.seed)
    data = artifacts.save_prepared(out_dir, source, is_test, cfg.dataset, cfg.root)
    click.echo(f"prepared {cfg.dataset}: {data.meta['n_train']} train / {data.meta['n_test']} test items -> {out_dir}")


def _test_metrics(params: Params, test_set: torch.utils.data.Dataset, device: torch.device, num_workers: int = 0):
    """Epoch metric: benign R@1 (%) of the test set ranked against itself, and its collapse diagnostics."""
    cfg = params.evaluate

    def metrics(model: torch.nn.Module) -> dict[str, float]:
        embeddings, labels = embed(model, test_set, cfg.batch_size, device, num_workers)
        own = torch.arange(len(labels))
        r1 = float(recall_at_1(embeddings, labels, embeddings, labels, own).mean()) * 100
        diagnostics = collapse_diagnostics(embeddings, labels, cfg.collapse_lambda, params.base.seed)
        return _rounded({"R@1": r1, **diagnostics})

    return metrics


@stage
@PARAMS_OPTION
@DATA_OPTION
@click.option("--checkpoint", type=click.Path(dir_okay=False), required=True, help="where to write the trained model")
@click.option("--log", "log_path", type=click.Path(dir_okay=False), required=True, help="per-epoch training log (CSV, a DVC plot)")
@PROGRESS_OPTION
def pretrain(params_path: str, data_dir: str, checkpoint: str, log_path: str, progress: bool) -> None:
    """Benign triplet training of the embedding model (METHOD.md section 3)."""
    params, device = _start(params_path)
    cfg = params.pretrain
    data = artifacts.load_prepared(data_dir)
    train_set, test_set = build_dataset(data, "train", train=True), build_dataset(data, "test", train=False)
    model = build_model(cfg.arch, cfg.embedding_dim, cfg.weights).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    log, state = fit(
        model, optimizer, train_set, torch.as_tensor(data.labels("train")), benign_step,
        _test_metrics(params, test_set, device, cfg.num_workers),
        epochs=cfg.epochs, pairs_per_batch=cfg.pairs_per_batch, seed=params.base.seed, margin=cfg.margin,
        miner=cfg.miner, device=device, num_workers=cfg.num_workers, progress=progress,
    )
    artifacts.save_checkpoint(checkpoint, model, _resolved(params, "base", "prepare", "pretrain"), state, optimizer)
    artifacts.write_csv(log_path, pd.DataFrame(log))
    click.echo(f"pretrained {cfg.arch}: final test R@1 {log[-1]['R@1']:.2f}% -> {checkpoint}")


@stage
@PARAMS_OPTION
@DATA_OPTION
@click.option("--pretrained", type=click.Path(exists=True, dir_okay=False), required=True, help="the benign model to start from")
@click.option("--defense", type=click.Choice(DEFENSES), required=True, help="which defense (METHOD.md section 4)")
@click.option("--checkpoint", type=click.Path(dir_okay=False), required=True, help="where to write the fine-tuned model")
@click.option("--log", "log_path", type=click.Path(dir_okay=False), required=True, help="per-epoch training log (CSV, a DVC plot)")
@PROGRESS_OPTION
def finetune(params_path: str, data_dir: str, pretrained: str, defense: str, checkpoint: str, log_path: str,
             progress: bool) -> None:
    """Adversarial fine-tuning of the pretrained model with one defense (METHOD.md section 4)."""
    params, device = _start(params_path)
    cfg = params.finetune
    data = artifacts.load_prepared(data_dir)
    model, start = artifacts.load_checkpoint(pretrained, device)
    train_set, test_set = build_dataset(data, "train", train=True), build_dataset(data, "test", train=False)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    step_fn = build_defense(defense, cfg, params.evaluate.collapse_lambda)
    num_workers = start["params"]["pretrain"]["num_workers"]
    log, state = fit(
        model, optimizer, train_set, torch.as_tensor(data.labels("train")), step_fn,
        _test_metrics(params, test_set, device, num_workers),
        epochs=cfg.epochs, pairs_per_batch=cfg.pairs_per_batch, seed=params.base.seed, margin=cfg.margin,
        miner=training_miner(defense, cfg), device=device, num_workers=num_workers, progress=progress,
    )
    sections = _resolved(params, "finetune")["finetune"]
    shared = {k: v for k, v in sections.items() if k not in DEFENSES and k != "defenses"}
    resolved = {**start["params"], "finetune": {**shared, "defense": defense, defense: sections[defense]}}
    state = {**state, "defense_state": step_fn.state_dict()}
    artifacts.save_checkpoint(checkpoint, model, resolved, state, optimizer)
    artifacts.write_csv(log_path, pd.DataFrame(log))
    click.echo(f"{defense}: final test R@1 {log[-1]['R@1']:.2f}%, collapseness {log[-1]['collapseness']:.3f} -> {checkpoint}")


@stage
@PARAMS_OPTION
@DATA_OPTION
@click.option("--checkpoint", type=click.Path(exists=True, dir_okay=False), required=True, help="model to evaluate")
@click.option("--metrics", "metrics_path", type=click.Path(dir_okay=False), required=True, help="metrics JSON to write")
def evaluate(params_path: str, data_dir: str, checkpoint: str, metrics_path: str) -> None:
    """Benign retrieval metrics of a model on the test split: R@K, mAP, mAP@R, NMI (in %)."""
    params, device = _start(params_path)
    cfg = params.evaluate
    data = artifacts.load_prepared(data_dir)
    model, _ = artifacts.load_checkpoint(checkpoint, device)
    embeddings, labels = embed(model, build_dataset(data, "test", train=False), cfg.batch_size, device)
    metrics = retrieval_metrics(embeddings, labels, cfg.recall_at, cfg.block_size, params.base.seed)
    metrics |= _rounded(collapse_diagnostics(embeddings, labels, cfg.collapse_lambda, params.base.seed))
    artifacts.write_json(metrics_path, metrics)
    click.echo(" ".join(f"{key} {value:.2f}" for key, value in metrics.items()))


@stage
@PARAMS_OPTION
@DATA_OPTION
@click.option("--checkpoint", type=click.Path(exists=True, dir_okay=False), required=True, help="model to attack")
@click.option("--name", type=click.Choice(ATTACKS), required=True, help="which ranking attack")
@click.option("--out", "out_path", type=click.Path(dir_okay=False), required=True, help="result JSON (clean and adversarial values)")
@click.option("--images", "images_path", type=click.Path(dir_okay=False), help="also save the first attack.save_images adversarial images here")
@PROGRESS_OPTION
def attack(params_path: str, data_dir: str, checkpoint: str, name: str, out_path: str, images_path: str | None,
           progress: bool) -> None:
    """Run one ranking attack (METHOD.md section 5) on every test image of a model."""
    params, device = _start(params_path)
    cfg = params.attack
    data = artifacts.load_prepared(data_dir)
    model, _ = artifacts.load_checkpoint(checkpoint, device)
    images, labels = stack_split(data, "test")
    budget = AttackBudget(eps=cfg.eps, step_size=cfg.step_size, steps=cfg.steps, random_start=cfg.random_start,
                          batch_size=cfg.batch_size, candidates=cfg.candidates, queries=cfg.queries)
    result = run_attack(name, model, images.to(device), labels.to(device), budget, params.base.seed,
                        max_queries=cfg.max_queries, save_images=cfg.save_images if images_path else 0,
                        progress=progress)
    artifacts.write_json(out_path, {
        "attack": name, "n_queries": result.n_queries,
        "clean": _rounded(result.clean), "adversarial": _rounded(result.adversarial),
        "params": _resolved(params, "attack")["attack"],
    })
    if images_path:
        artifacts.save_tensor(images_path, result.images)
    click.echo(f"{name}: " + ", ".join(f"{k} {result.clean[k]:.3f} -> {v:.3f}" for k, v in result.adversarial.items()))


@stage
@PARAMS_OPTION
@click.option("--benign", "benign_path", type=click.Path(exists=True, dir_okay=False), required=True, help="the model's evaluate metrics JSON")
@click.option("--attacks", "attacks_dir", type=click.Path(exists=True, file_okay=False), required=True, help="folder of the model's attack JSONs")
@click.option("--out", "out_path", type=click.Path(dir_okay=False), required=True, help="robustness metrics JSON to write")
def robustness(params_path: str, benign_path: str, attacks_dir: str, out_path: str) -> None:
    """ERS and ARS (METHOD.md section 6) of one model from its attack results."""
    params = load_params(params_path)
    benign = artifacts.read_json(benign_path)
    clean: dict[str, float] = {}
    adversarial: dict[str, float] = {}
    for name in params.attack.names:
        result = artifacts.read_json(Path(attacks_dir) / f"{name}.json")
        clean.update(result["clean"])
        adversarial.update(result["adversarial"])
    summary = robustness_summary(clean, adversarial, benign["R@1"], benign["spread"])
    artifacts.write_json(out_path, {
        **{key: None if value is None else round(value, 4) for key, value in summary.items()},
        "adversarial": adversarial, "clean": clean,
    })
    click.echo(", ".join(f"{key} {'n/a' if value is None else f'{value:.2f}'}" for key, value in summary.items()))


@stage
@PARAMS_OPTION
@click.option("--metrics", "metrics_dir", type=click.Path(exists=True, file_okay=False), required=True, help="folder holding benign/ and robustness/ metrics")
@click.option("--table", "table_path", type=click.Path(dir_okay=False), required=True, help="CSV, one row per model")
@click.option("--markdown", "markdown_path", type=click.Path(dir_okay=False), required=True, help="markdown report")
@click.option("--figure", "figure_path", type=click.Path(dir_okay=False), required=True, help="PNG bar chart of ERS and ARS")
def report(params_path: str, metrics_dir: str, table_path: str, markdown_path: str, figure_path: str) -> None:
    """The comparison of every model: a CSV table, a markdown report and a PNG chart."""
    params = load_params(params_path)
    models = ["pretrained", *params.finetune.defenses]
    folder = Path(metrics_dir)
    benign = {m: artifacts.read_json(folder / "benign" / f"{m}.json") for m in models}
    robust = {m: artifacts.read_json(folder / "robustness" / f"{m}.json") for m in models}
    table = reporting.robustness_table(models, benign, robust)
    artifacts.write_csv(table_path, table)
    artifacts.write_text(markdown_path, reporting.markdown_report(table, params.attack.model_dump(), params.attack.max_queries))
    artifacts.save_figure(figure_path, reporting.robustness_figure(table))
    click.echo(table.to_string(index=False))


@stage
@PARAMS_OPTION
@click.argument("preset")
@click.option("--root", help="where your copy of the dataset lives (sets prepare.root)")
def preset(params_path: str, preset: str, root: str | None) -> None:
    """Switch params.yaml to a published setting: PRESET is a name in presets/ (cub, cars, sop,
    mnist, fashion) or a YAML file of overrides. Keys it does not name keep their values; the
    result is validated before params.yaml is rewritten (comments kept)."""
    folder = Path(params_path).resolve().parent / "presets"
    preset_path = Path(preset) if Path(preset).is_file() else folder / f"{preset}.yaml"
    if not preset_path.is_file():
        available = ", ".join(sorted(p.stem for p in folder.glob("*.yaml"))) or "none"
        raise ParamsError(f"{preset}: no such preset file or name; presets in {folder}: {available}")
    overrides = artifacts.read_yaml_keeping_comments(preset_path)
    if root is not None:
        overrides.setdefault("prepare", {})["root"] = root
    parse_params(overrides, source=str(preset_path))
    merged = merge_overrides(artifacts.read_yaml_keeping_comments(params_path), overrides)
    parse_params(merged, source=f"{params_path} with {preset_path.name}")
    artifacts.write_yaml_keeping_comments(params_path, merged)
    click.echo(f"{params_path}: applied {preset_path}; review with `git diff {params_path}`, run with `dvc repro`")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """catride: reproducible adversarially robust image retrieval.

    Each command is one stage of the DVC pipeline (see dvc.yaml); run
    `dvc repro` to run them all in order.
    """


for _command in (prepare, pretrain, finetune, evaluate, attack, robustness, report, preset):
    main.add_command(_command)


if __name__ == "__main__":
    sys.exit(main())
