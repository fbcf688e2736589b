"""``catride pretrain``: benign triplet training of the embedding model every other model starts from."""

from __future__ import annotations

import click
import pandas as pd
import torch

from catride_core.artifacts.checkpoints import save_checkpoint
from catride_core.artifacts.files import ensure_writable, rounded, write_csv
from catride_core.artifacts.prepared import load_prepared
from catride_core.artifacts.training_state import TrainingState
from catride_core.commands.common import (
    CHECKPOINT_OUT_OPTION,
    DATA_OPTION,
    LOG_OPTION,
    PARAMS_OPTION,
    PROGRESS_OPTION,
    STATE_OPTION,
    announce_resume,
    check_shareable,
    identity_params,
    stage,
    start,
    state_file,
)
from catride_core.config import resolved
from catride_core.data.prepared import build_dataset
from catride_core.distributed import distributed
from catride_core.errors import ParamsError
from catride_core.models import build_model, input_mismatch
from catride_core.retrieval.evaluation import epoch_metrics
from catride_core.training import benign_step, fit


@stage
@PARAMS_OPTION
@DATA_OPTION
@CHECKPOINT_OUT_OPTION
@LOG_OPTION
@STATE_OPTION
@PROGRESS_OPTION
def pretrain(params_path: str, data_dir: str, checkpoint: str, log_path: str, state_path: str | None,
             progress: bool) -> None:
    """Benign triplet training of the embedding model (docs/method.md section 3).

    Under ``torchrun --nproc_per_node N`` N processes train it data-parallel (README "Several processes").
    """
    params, device = start(params_path)
    ensure_writable(checkpoint, log_path, state_file(state_path, checkpoint))
    cfg, evaluation = params.pretrain, params.evaluate
    data = load_prepared(data_dir)
    train_set, test_set = build_dataset(data, "train", train=True), build_dataset(data, "test", train=False)
    with distributed(device) as world:
        check_shareable(params_path, "pretrain.pairs_per_batch", cfg.pairs_per_batch, world.size)
        model = build_model(cfg.arch, cfg.embedding_dim, cfg.weights).to(device)
        mismatch = input_mismatch(model, data.meta["image_size"], data.meta["channels"])
        if mismatch:
            raise ParamsError(f"{params_path}: pretrain.arch {cfg.arch!r} does not fit prepare.dataset {data.meta['dataset']!r}: {mismatch}")
        optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        training_state = TrainingState(state_file(state_path, checkpoint), {
            "stage": "pretrain", "params": identity_params(params, "base", "prepare", "pretrain", "evaluate"),
            "data": data.meta["files"],
        })
        resuming = training_state.resume(model, optimizer, None)
        if world.is_main:
            announce_resume(training_state, resuming["resume"])

        def metrics(m: torch.nn.Module) -> dict[str, float]:
            return rounded(epoch_metrics(m, test_set, evaluation.batch_size, device,
                                         evaluation.diagnostic_inverse_temperature, params.base.seed, cfg.num_workers,
                                         world))

        log, state = fit(
            model, optimizer, train_set, torch.as_tensor(data.labels("train")), benign_step, metrics,
            epochs=cfg.epochs, pairs_per_batch=cfg.pairs_per_batch, seed=params.base.seed, margin=cfg.margin,
            miner=cfg.miner, device=device, num_workers=cfg.num_workers, progress=progress,
            precision=params.base.precision, checkpoint_every=params.base.checkpoint_every, world=world, **resuming,
        )
        # pretrain.epochs 0: the start is the initialisation (the published protocols); its log is the one row of epoch 0
        log = log or [{"epoch": 0, "step": 0, **metrics(model)}]
    if not world.is_main:
        return
    save_checkpoint(checkpoint, model, resolved(params, "base", "prepare", "pretrain"), state, optimizer)
    write_csv(log_path, pd.DataFrame(log))
    training_state.remove()
    trained = f"{cfg.epochs} epochs" if cfg.epochs else "no epochs: the initialisation"
    click.echo(f"pretrained {cfg.arch} ({trained}): test R@1 {log[-1]['R@1']:.2f}% -> {checkpoint}")
