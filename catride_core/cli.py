"""The ``catride`` command: every stage command of the pipeline, plus ``preset``, in one click group.

The commands live one per module in ``catride_core.commands``; ``stages/*.py``
(what dvc.yaml runs) import their own module only, so that editing one command
reruns only its stage.
"""

from __future__ import annotations

import sys

import click

from catride_core.commands.attack import attack
from catride_core.commands.evaluate import evaluate
from catride_core.commands.finetune import finetune
from catride_core.commands.prepare import prepare
from catride_core.commands.preset import preset
from catride_core.commands.pretrain import pretrain
from catride_core.commands.report import report
from catride_core.commands.robustness import robustness
from catride_core.commands.seeds import seeds


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """catride: reproducible adversarially robust image retrieval.

    Each command but `preset` and `seeds` is one stage of the DVC pipeline (see
    dvc.yaml); run `dvc repro` to run them all in order.
    """


for _command in (prepare, pretrain, finetune, evaluate, attack, robustness, report, preset, seeds):
    main.add_command(_command)


if __name__ == "__main__":
    sys.exit(main())
