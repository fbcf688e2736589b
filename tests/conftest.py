"""Shared test helpers: which params keys a piece of code reads."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import pytest
from pydantic import BaseModel

from catride_core import config


@contextlib.contextmanager
def recording_params_reads() -> Iterator[set[str]]:
    """Record every params key (``section.key``, ``finetune.ca_tride.miner``) read while the block runs.

    ``parse_params`` (which ``load_params`` calls) is wrapped to label each section
    object with its dotted path, and attribute reads of a field whose value is not
    itself a section are recorded.
    """
    reads: set[str] = set()
    paths: dict[int, str] = {}
    original_parse, original_getattribute = config.parse_params, config.Section.__getattribute__

    def label(section: BaseModel, prefix: str) -> None:
        paths[id(section)] = prefix
        for name in type(section).model_fields:
            value = original_getattribute(section, name)
            if isinstance(value, BaseModel):
                label(value, f"{prefix}{name}.")

    def parse_params(*args, **kwargs):
        params = original_parse(*args, **kwargs)
        label(params, "")
        return params

    def getattribute(self, name):
        value = original_getattribute(self, name)
        if id(self) in paths and name in type(self).model_fields and not isinstance(value, BaseModel):
            reads.add(paths[id(self)] + name)
        return value

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(config, "parse_params", parse_params)
        patch.setattr(config.Section, "__getattribute__", getattribute)
        yield reads
