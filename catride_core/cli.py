"""The ``catride`` command: every stage command of the pipeline, plus ``preset``, in one click group.

The commands live one per module in ``catride_core.commands``; ``stages/*.py``
(what dvc.yaml runs) import their own module only, so that editing one command
reruns only its stage.
"""

from __future__ import annotations

import sys

import click

from catride_core.commands.adaptive import adaptive
from catride_core.commands.attack import attack
from catride_core.commands.check import check
from catride_core.commands.curves import curves
from catride_core.commands.evaluate import evaluate
from catride_core.commands.examples import examples
from catride_core.commands.finetune import finetune
from catride_core.commands.prepare import prepare
from catride_core.commands.preset import preset
from catride_core.commands.pretrain import pretrain
from catride_core.commands.report import report
from catride_core.commands.robustness import robustness
from catride_core.commands.seeds import seeds
from catride_core.commands.sweep import sweep

#: the line each command has in `catride --help` (a docstring's first sentence is longer than a line)
SUMMARIES = {
    "check": "validate params.yaml as a whole",
    "prepare": "read and split the dataset of prepare.dataset",
    "pretrain": "benign triplet training of the embedding model",
    "finetune": "fine-tune the pretrained model with one defense",
    "evaluate": "benign retrieval metrics of a checkpoint",
    "attack": "the ranking attacks of attack.names on a checkpoint",
    "adaptive": "the attacks run harder (APGD, restarts, transfer) on a checkpoint",
    "robustness": "ERS and ARS of one model from its attacks",
    "sweep": "robust R@1 / prank of a checkpoint at several eps",
    "curves": "every model's eps sweep as one CSV and one figure",
    "examples": "retrieval examples of a checkpoint before/after attacks",
    "report": "the comparison of every model: CSV, markdown, PNG",
    "preset": "switch params.yaml to a published setting",
    "seeds": "mean and std of every score over the seeds DVC's queue ran",
}


class Catride(click.Group):
    """The group, listing its commands in pipeline order with one line each."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(self.commands)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        with formatter.section("Commands"):
            formatter.write_dl([(name, SUMMARIES[name]) for name in self.list_commands(ctx)])


@click.group(cls=Catride, context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """catride: reproducible adversarially robust image retrieval.

    Each command but `preset` and `seeds` is one stage of the DVC pipeline (see
    dvc.yaml); run `dvc repro` to run them all in order. `evaluate`, `attack`, `adaptive`, `sweep`,
    `examples`, `curves` and `report` also run on their own on any checkpoint
    and prepared data, params.yaml optional, with `--set section.key=value`
    overrides (README "Ad-hoc use").
    """


for _command in (check, prepare, pretrain, finetune, evaluate, attack, adaptive, robustness, sweep, curves, examples, report, preset, seeds):
    main.add_command(_command)


if __name__ == "__main__":
    sys.exit(main())
