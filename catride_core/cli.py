"""Command-line entry points: one click command per pipeline stage.

Each command is the thin shell around the core: load its params section,
read its inputs, call core functions, write its outputs (atomically, to the
paths given on its command line). ``stages/*.py`` are what dvc.yaml runs; they
only call these commands.
"""

from __future__ import annotations

import sys
from typing import Any

import click
import pandas as pd
import torch

from catride_core import artifacts
from catride_core.config import Params, ParamsError, load_params
from catride_core.data import DataError, build_dataset, choose_split, limit_per_class, read_source
from catride_core.models import build_model
from catride_core.retrieval.metrics import recall_at_1, retrieval_metrics
from catride_core.runtime import resolve_device, seed_everything
from catride_core.training import benign_step, embed, fit

PARAMS_OPTION = click.option(
    "--params", "params_path", type=click.Path(dir_okay=False), default="params.yaml", show_default=True,
    help="the pipeline's params file",
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
        except (DataError, FileNotFoundError, ValueError) as exc:
            click.echo(f"error: {exc}", err=True)
            ctx.exit(1)


def stage(function: Any) -> click.Command:
    """Decorator: a pipeline stage command (known errors reported as one line)."""
    return click.command(cls=StageCommand)(function)


def _resolved(params: Params, *sections: str) -> dict[str, Any]:
    """The params sections an output depends on, as plain JSON-able data."""
    return {name: getattr(params, name).model_dump(mode="json") for name in sections}


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


def _test_recall(test_set: torch.utils.data.Dataset, batch_size: int, device: torch.device, num_workers: int):
    """Epoch metric: benign R@1 (%) on the test split, the test set ranked against itself."""

    def metrics(model: torch.nn.Module) -> dict[str, float]:
        embeddings, labels = embed(model, test_set, batch_size, device, num_workers)
        own = torch.arange(len(labels))
        return {"R@1": round(float(recall_at_1(embeddings, labels, embeddings, labels, own).mean()) * 100, 4)}

    return metrics


@stage
@PARAMS_OPTION
@click.option("--data", "data_dir", type=click.Path(exists=True, file_okay=False), required=True, help="prepared dataset folder")
@click.option("--checkpoint", type=click.Path(dir_okay=False), required=True, help="where to write the trained model")
@click.option("--log", "log_path", type=click.Path(dir_okay=False), required=True, help="per-epoch training log (CSV, a DVC plot)")
@PROGRESS_OPTION
def pretrain(params_path: str, data_dir: str, checkpoint: str, log_path: str, progress: bool) -> None:
    """Benign triplet training of the embedding model (METHOD.md section 3)."""
    params = load_params(params_path)
    cfg = params.pretrain
    seed_everything(params.base.seed)
    device = resolve_device(params.base.device)
    data = artifacts.load_prepared(data_dir)
    train_set, test_set = build_dataset(data, "train", train=True), build_dataset(data, "test", train=False)
    model = build_model(cfg.arch, cfg.embedding_dim, cfg.weights).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    log, state = fit(
        model, optimizer, train_set, torch.as_tensor(data.labels("train")), benign_step,
        _test_recall(test_set, params.evaluate.batch_size, device, cfg.num_workers),
        epochs=cfg.epochs, pairs_per_batch=cfg.pairs_per_batch, seed=params.base.seed, margin=cfg.margin,
        miner=cfg.miner, device=device, num_workers=cfg.num_workers, progress=progress,
    )
    artifacts.save_checkpoint(checkpoint, model, _resolved(params, "base", "prepare", "pretrain"), state, optimizer)
    artifacts.write_csv(log_path, pd.DataFrame(log))
    click.echo(f"pretrained {cfg.arch}: final test R@1 {log[-1]['R@1']:.2f}% -> {checkpoint}")


@stage
@PARAMS_OPTION
@click.option("--data", "data_dir", type=click.Path(exists=True, file_okay=False), required=True, help="prepared dataset folder")
@click.option("--checkpoint", type=click.Path(exists=True, dir_okay=False), required=True, help="model to evaluate")
@click.option("--metrics", "metrics_path", type=click.Path(dir_okay=False), required=True, help="metrics JSON to write")
def evaluate(params_path: str, data_dir: str, checkpoint: str, metrics_path: str) -> None:
    """Benign retrieval metrics of a model on the test split: R@K, mAP, mAP@R, NMI (in %)."""
    params = load_params(params_path)
    cfg = params.evaluate
    seed_everything(params.base.seed)
    device = resolve_device(params.base.device)
    data = artifacts.load_prepared(data_dir)
    model, _ = artifacts.load_checkpoint(checkpoint, device)
    embeddings, labels = embed(model, build_dataset(data, "test", train=False), cfg.batch_size, device)
    metrics = retrieval_metrics(embeddings, labels, cfg.recall_at, cfg.block_size, params.base.seed)
    artifacts.write_json(metrics_path, metrics)
    click.echo(" ".join(f"{key} {value:.2f}" for key, value in metrics.items()))


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """catride: reproducible adversarially robust image retrieval.

    Each command is one stage of the DVC pipeline (see dvc.yaml); run
    `dvc repro` to run them all in order.
    """


for _command in (prepare, pretrain, evaluate):
    main.add_command(_command)


if __name__ == "__main__":
    sys.exit(main())
