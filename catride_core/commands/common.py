"""What every stage command shares: the options, the error handling, and the first steps."""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import re
import signal
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import click
import pandas as pd
import torch

from catride_core.config import Params, load_params, resolved
from catride_core.errors import CatrideError, ParamsError
from catride_core.runtime import (
    configure_backends,
    device_line,
    resolve_device,
    seed_everything,
)

PARAMS_OPTION = click.option(
    "--params", "params_path", type=click.Path(dir_okay=False), default="params.yaml", show_default=True,
    help="the pipeline's params file",
)
#: the params of a command that also runs outside DVC, on any checkpoint: params.yaml is optional there
ADHOC_PARAMS_OPTION = click.option(
    "--params", "params_path", type=click.Path(dir_okay=False), default=None,
    help="the pipeline's params file  [default: ./params.yaml where there is one, else the built-in defaults]",
)
SET_OPTION = click.option(
    "--set", "overrides", multiple=True, metavar="SECTION.KEY=VALUE",
    help="change one params key for this run (repeatable; the value is read as YAML), e.g. --set attack.eps=8/255",
)
DATA_OPTION = click.option(
    "--data", "data_dir", type=click.Path(file_okay=False), required=True, help="prepared dataset folder"
)
CHECKPOINT_OUT_OPTION = click.option(
    "--checkpoint", type=click.Path(dir_okay=False), required=True, help="where to write the trained model"
)
LOG_OPTION = click.option(
    "--log", "log_path", type=click.Path(dir_okay=False), required=True, help="per-epoch training log (CSV, a DVC plot)"
)
STATE_OPTION = click.option(
    "--state", "state_path", type=click.Path(dir_okay=False), default=None,
    help="resumable training state (kept outside the stage's outputs, removed when training ends); "
         "default: .resume/<checkpoint name> in the checkpoint's folder",
)
PROGRESS_OPTION = click.option("--progress/--no-progress", default=True, show_default=True, help="show progress bars")


#: exit code of a stage stopped by SIGINT (Ctrl-C) or SIGTERM, as a shell reports a signal
INTERRUPTED_EXIT = 130


class Interrupted(Exception):
    """SIGINT or SIGTERM arrived: unwind (temporary files are removed on the way) and exit."""


def _raise_interrupted(signum: int, frame: Any) -> None:
    raise Interrupted(signal.Signals(signum).name)


#: prctl(2)'s option that asks the kernel for a signal when the parent process ends
_PR_SET_PDEATHSIG = 1


def _end_with_dvc() -> None:
    """Under DVC (which sets ``DVC_STAGE``) on Linux, get SIGTERM when DVC ends, and so stop as if sent it.

    ``kill <pid of dvc repro>`` ends DVC alone: its stage would run on,
    orphaned, and write outputs that no ``dvc.lock`` records. Outside DVC a
    command keeps running when its shell ends (``nohup catride ... &``).
    """
    if "DVC_STAGE" in os.environ and sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


def user_message(exc: CatrideError) -> str:
    """The error's message as the user should read it.

    An error raised in a DataLoader worker reaches the main process wrapped in
    "Caught DataError in DataLoader worker process 0. Original Traceback ...":
    only the original message is kept, as if it had been raised here.
    """
    text = str(exc)
    if "Original Traceback" in text:
        marker = re.compile(rf"^(?:[\w.]+\.)?{type(exc).__name__}: ", re.MULTILINE)
        found = list(marker.finditer(text))
        if found:
            text = text[found[-1].end():]
    return text.strip()


def report_error(line: str) -> None:
    """Print the error line; under torchrun, once (by rank 0) and as each failed process's cause in its report.

    torchrun ends a failed run with a report of about 40 lines, whose
    "traceback" entry of each failed process says only "To enable traceback
    see ..." unless the process wrote the error file torchrun names in
    ``TORCHELASTIC_ERROR_FILE``: the line is written there, so that the
    report's last entry, the root cause, reads it. A process other than rank 0
    prints nothing (every process meets the same bad input; N copies of the
    line above the report hid nothing but added noise).
    """
    error_file = os.environ.get("TORCHELASTIC_ERROR_FILE")
    if error_file:
        with contextlib.suppress(OSError):  # the report then says less; the line is still printed below
            # torch's record() layout, the line standing for the traceback it shows
            extra = {"py_callstack": line, "timestamp": str(int(time.time()))}
            Path(error_file).write_text(json.dumps({"message": {"message": line, "extraInfo": extra}}))
    if not error_file or os.environ.get("RANK", "0") == "0":
        click.echo(line, err=True)


class StageCommand(click.Command):
    """A click command that reports the project's own errors as one line on stderr.

    A ``CatrideError`` (bad params, a broken dataset or file, a failed attack
    check) is the user's to fix: it prints ``error: <message>`` and exits with
    its code (2 for params, 1 otherwise), having written nothing. Ctrl-C and
    SIGTERM stop the stage promptly with one line and exit 130; outputs are
    written atomically, so nothing half-written stays behind; under DVC the
    stage also stops so when DVC itself is killed. Any other exception is a
    bug and keeps its traceback.
    """

    def invoke(self, ctx: click.Context) -> Any:
        # both signals handled here, whatever the disposition inherited (a background job ignores SIGINT)
        previous = {signum: signal.signal(signum, _raise_interrupted) for signum in (signal.SIGINT, signal.SIGTERM)}
        try:
            _end_with_dvc()
            return super().invoke(ctx)
        except CatrideError as exc:
            report_error(f"error: {user_message(exc)}")
            ctx.exit(exc.exit_code)
        except Interrupted as exc:
            click.echo(f"interrupted by {exc}: stopped, no output written", err=True)
            sys.stderr.flush()
            ctx.exit(INTERRUPTED_EXIT)
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)


def stage(function: Callable[..., Any]) -> click.Command:
    """Decorator: a pipeline stage command (the project's errors reported as one line)."""
    return click.command(cls=StageCommand)(function)


def echo_table(table: pd.DataFrame, decimals: int = 3) -> None:
    """A short results table on stdout, numbers rounded."""
    click.echo(table.to_string(index=False, float_format=lambda v: f"{v:.{decimals}f}"))


def state_file(state_path: str | None, checkpoint: str) -> Path:
    """Where a training command keeps its resumable state: ``--state``, or ``.resume/<name>`` beside the checkpoint.

    Not beside it as a dotted sibling: writing the checkpoint clears stale
    temporaries ``.<name>.*``, and the state must outlive a failed final write.
    """
    if state_path is not None:
        return Path(state_path)
    return Path(checkpoint).parent / ".resume" / Path(checkpoint).name


def identity_params(params: Params, *sections: str) -> dict[str, Any]:
    """The params a training state must match to be resumed: ``sections`` resolved, less what cannot change results."""
    chosen = resolved(params, *sections)
    if "base" in chosen:
        chosen["base"] = {k: v for k, v in chosen["base"].items() if k != "checkpoint_every"}
    return chosen


def announce_resume(state: Any, progress: Any) -> None:
    """One line when a training command continues an interrupted run."""
    if progress is not None:
        click.echo(f"resuming from {state.path}: epoch {progress.epoch + 1}, global step {progress.step}", err=True)


def check_shareable(params_path: str, key: str, pairs_per_batch: int, processes: int) -> None:
    """Under torchrun, each process trains on an equal share of whole SPC-2 pairs of every global batch.

    Raises:
        ParamsError: naming ``key`` when ``pairs_per_batch`` is not a multiple of ``processes``.
    """
    if pairs_per_batch % processes:
        raise ParamsError(f"{params_path}: {key} = {pairs_per_batch} pairs cannot be shared equally by "
                          f"{processes} processes; make it a multiple of {processes}")


def read_params(params_path: str | None, overrides: Sequence[str] = ()) -> Params:
    """The params of a command, with its ``--set`` overrides laid over them.

    ``params_path`` None (a command run outside a project) reads ./params.yaml
    where there is one, and the defaults (the values params.yaml lists) otherwise.
    """
    if params_path is None and Path("params.yaml").is_file():
        params_path = "params.yaml"
    return load_params(params_path, overrides)


def start(params_path: str | None, overrides: Sequence[str] = ()) -> tuple[Params, torch.device]:
    """What every computing stage does first: validate the params (and overrides), pick and set up the device, seed.

    Prints the device line (``runtime.device_line``) on stderr, so a run that
    fell back to the CPU says so in its first line.
    """
    params = read_params(params_path, overrides)
    device = resolve_device(params.base.device)
    configure_backends(params.base.cuda_fast)
    seed_everything(params.base.seed, device)
    click.echo(device_line(device, params.base.device), err=True)
    return params, device
