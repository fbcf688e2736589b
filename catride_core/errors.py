"""The project's own errors: each one means bad input, never a bug, and its message is one line for the user.

A stage command reports a ``CatrideError`` as ``error: <message>`` and exits
non-zero; any other exception is a bug and keeps its traceback.
"""

from __future__ import annotations


class CatrideError(Exception):
    """Bad input the user can fix: the message names the file, key or value at fault."""

    #: the exit code a stage command ends with
    exit_code = 1


class ParamsError(CatrideError, ValueError):
    """A params file that cannot be used; the message is one line naming file and key."""

    exit_code = 2


class DataError(CatrideError, ValueError):
    """A dataset or prepared-data folder that cannot be read; the message names the file or line at fault."""


class ArtifactError(CatrideError):
    """A checkpoint or result file that is missing, unreadable, or not what the stage expects."""


class AttackCheckError(CatrideError, RuntimeError):
    """An attack's inputs or outputs break the threat model; the results cannot be trusted."""


class TrainingError(CatrideError):
    """Training went non-finite (a loss or a statistic is NaN or inf); the message names epoch and step."""
