"""``catride check``: the whole params file validated, as the pipeline's first stage."""

from __future__ import annotations

import click

from catride_core.commands.common import PARAMS_OPTION, stage
from catride_core.config import load_params


@stage
@PARAMS_OPTION
def check(params_path: str) -> None:
    """Validate the whole params file: every key known, every value of its type and range, the sections consistent.

    DVC reruns a stage only when a key it declares changes, so a key that no
    stage declares (a misspelt section such as `atack:`) is never read by one
    and `dvc repro` would report success. This stage depends on the whole file,
    so DVC runs it whenever the file changes.
    """
    load_params(params_path)
    click.echo(f"{params_path}: valid")
