"""``catride preset``: lay a published setting (presets/<name>.yaml) over params.yaml, comments kept."""

from __future__ import annotations

from pathlib import Path

import click

from catride_core.artifacts.files import write_text
from catride_core.commands.common import PARAMS_OPTION, stage
from catride_core.config import (
    ParamsError,
    dump_params_document,
    merge_overrides,
    parse_params,
    read_params_document,
)


def dataset_folder(root: str) -> Path:
    """``--root`` as an absolute folder, ``~`` expanded; it must exist (``''`` would be the current folder)."""
    if not root.strip():
        raise ParamsError(f"--root {root!r}: empty; give the folder of your copy of the dataset")
    folder = Path(root).expanduser()
    if not folder.exists():
        raise ParamsError(f"--root {root}: no such folder")
    if not folder.is_dir():
        raise ParamsError(f"--root {root}: not a folder")
    return folder.resolve()


@stage
@PARAMS_OPTION
@click.argument("preset")
@click.option("--root", help="where your copy of the dataset lives (sets prepare.root, made absolute)")
def preset(params_path: str, preset: str, root: str | None) -> None:
    """Switch params.yaml to a published setting: PRESET is a name in presets/ (cub, cars, sop,
    mnist, fashion) or a YAML file of overrides. Keys it does not name keep their values; the
    result is validated before params.yaml is rewritten (comments kept)."""
    folder = Path(params_path).resolve().parent / "presets"
    preset_path = Path(preset) if Path(preset).is_file() else folder / f"{preset}.yaml"
    if not preset_path.is_file():
        available = ", ".join(sorted(p.stem for p in folder.glob("*.yaml"))) or "none"
        raise ParamsError(f"{preset}: no such preset file or name; presets in {folder}: {available}")
    overrides = read_params_document(preset_path)
    if root is not None:
        overrides.setdefault("prepare", {})["root"] = str(dataset_folder(root))
    parse_params(overrides, source=str(preset_path))
    merged = merge_overrides(read_params_document(params_path), overrides)
    parse_params(merged, source=f"{params_path} with {preset_path.name}")
    write_text(params_path, dump_params_document(merged))
    click.echo(f"{params_path}: applied {preset_path}; review with `git diff {params_path}`, run with `dvc repro`")
