"""``catride finetune``: one compared model from the pretrained one: a defense's adversarial fine-tuning,
benign fine-tuning (``none``), or none at all (``pretrained``)."""

from __future__ import annotations

import click
import pandas as pd
import torch

from catride_core import names
from catride_core.artifacts.checkpoints import (
    check_start,
    load_checkpoint,
    save_checkpoint,
)
from catride_core.artifacts.files import (
    ensure_writable,
    file_digest,
    rounded,
    write_csv,
)
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
from catride_core.config import resolved_finetune
from catride_core.data.prepared import build_dataset
from catride_core.defenses import build_defense, training_miner
from catride_core.distributed import distributed
from catride_core.models import set_batchnorm_training
from catride_core.retrieval.evaluation import epoch_metrics
from catride_core.training import fit


@stage
@PARAMS_OPTION
@DATA_OPTION
@click.option("--start", "start_path", type=click.Path(dir_okay=False), required=True, help="the pretrained model to start from")
@click.option("--model", "model_name", type=click.Choice(names.MODELS), required=True,
              help="which model: a defense (docs/method.md section 4), or `pretrained` for zero fine-tuning epochs")
@CHECKPOINT_OUT_OPTION
@LOG_OPTION
@STATE_OPTION
@PROGRESS_OPTION
def finetune(params_path: str, data_dir: str, start_path: str, model_name: str, checkpoint: str, log_path: str,
             state_path: str | None, progress: bool) -> None:
    """Fine-tune the pretrained model into one compared model (a defense, or `pretrained` as it is).

    Under ``torchrun --nproc_per_node N`` N processes fine-tune it data-parallel (README "Several processes").
    """
    params, device = start(params_path)
    ensure_writable(checkpoint, log_path, state_file(state_path, checkpoint))
    cfg, evaluation = params.finetune, params.evaluate
    data = load_prepared(data_dir)
    with distributed(device) as world:
        check_shareable(params_path, "finetune.pairs_per_batch", cfg.pairs_per_batch, world.size)
        model, begin = load_checkpoint(start_path, device, data.meta)
        check_start(start_path, begin)
        train_set, test_set = build_dataset(data, "train", train=True), build_dataset(data, "test", train=False)
        num_workers = begin["params"]["pretrain"]["num_workers"]

        def metrics(m: torch.nn.Module) -> dict[str, float]:
            return rounded(epoch_metrics(m, test_set, evaluation.batch_size, device,
                                         evaluation.diagnostic_inverse_temperature, params.base.seed, num_workers,
                                         world))

        resolved = resolved_finetune(params, model_name, begin["params"])
        if model_name == names.PRETRAINED:
            # zero epochs: the start as it is; its log is the one row of epoch 0
            row = {"epoch": 0, "step": 0, **metrics(model)}
            if world.is_main:
                save_checkpoint(checkpoint, model, resolved, begin["state"])
                write_csv(log_path, pd.DataFrame([row]))
                click.echo(f"{model_name}: test R@1 {row['R@1']:.2f}% (no fine-tuning) -> {checkpoint}")
            return
        set_batchnorm_training(model, getattr(cfg, model_name).train_batchnorm)
        optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        step_fn = build_defense(model_name, cfg, evaluation.diagnostic_inverse_temperature)
        training_state = TrainingState(state_file(state_path, checkpoint), {
            "stage": "finetune", "params": {**resolved, **identity_params(params, "base", "evaluate")},
            "start": file_digest(start_path), "data": data.meta["files"],
        })
        resuming = training_state.resume(model, optimizer, step_fn)
        if world.is_main:
            announce_resume(training_state, resuming["resume"])
        log, state = fit(
            model, optimizer, train_set, torch.as_tensor(data.labels("train")), step_fn, metrics,
            epochs=cfg.epochs, pairs_per_batch=cfg.pairs_per_batch, seed=params.base.seed, margin=cfg.margin,
            miner=training_miner(model_name, cfg), device=device, num_workers=num_workers, progress=progress,
            precision=params.base.precision, checkpoint_every=params.base.checkpoint_every, world=world, **resuming,
        )
    if not world.is_main:
        return
    save_checkpoint(checkpoint, model, resolved, {**state, "defense_state": step_fn.state_dict()}, optimizer)
    write_csv(log_path, pd.DataFrame(log))
    training_state.remove()
    click.echo(f"{model_name}: final test R@1 {log[-1]['R@1']:.2f}%, collapseness {log[-1]['collapseness']:.3f} -> {checkpoint}")
