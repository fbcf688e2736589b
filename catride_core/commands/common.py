"""What every stage command shares: the options, the error handling, and the first steps."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click
import torch

from catride_core.config import Params, load_params
from catride_core.errors import CatrideError
from catride_core.runtime import resolve_device, seed_everything

PARAMS_OPTION = click.option(
    "--params", "params_path", type=click.Path(dir_okay=False), default="params.yaml", show_default=True,
    help="the pipeline's params file",
)
DATA_OPTION = click.option(
    "--data", "data_dir", type=click.Path(file_okay=False), required=True, help="prepared dataset folder"
)
PROGRESS_OPTION = click.option("--progress/--no-progress", default=True, show_default=True, help="show progress bars")


class StageCommand(click.Command):
    """A click command that reports the project's own errors as one line on stderr.

    A ``CatrideError`` (bad params, a broken dataset or file, a failed attack
    check) is the user's to fix: it prints ``error: <message>`` and exits with
    its code (2 for params, 1 otherwise), having written nothing. Any other
    exception is a bug and keeps its traceback.
    """

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except CatrideError as exc:
            click.echo(f"error: {exc}", err=True)
            ctx.exit(exc.exit_code)


def stage(function: Callable[..., Any]) -> click.Command:
    """Decorator: a pipeline stage command (the project's errors reported as one line)."""
    return click.command(cls=StageCommand)(function)


def start(params_path: str) -> tuple[Params, torch.device]:
    """What every computing stage does first: validate the params, seed, pick the device."""
    params = load_params(params_path)
    seed_everything(params.base.seed)
    return params, resolve_device(params.base.device)
