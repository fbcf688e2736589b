"""``catride prepare``: read the dataset, split it, write the prepared copy every later stage reads."""

from __future__ import annotations

import click

from catride_core.artifacts.files import ensure_folder_writable
from catride_core.artifacts.prepared import PREPARED_FILES, save_prepared
from catride_core.commands.common import PARAMS_OPTION, PROGRESS_OPTION, stage
from catride_core.config import dataset_root, load_params
from catride_core.data.images import decode_images
from catride_core.data.sources import choose_split, limit_per_class, read_source
from catride_core.data.split import split_problem
from catride_core.errors import ParamsError


@stage
@PARAMS_OPTION
@click.option("--out", "out_dir", type=click.Path(file_okay=False), required=True, help="folder to write the prepared dataset to")
@click.option("--workers", type=click.IntRange(min=0), default=None,
              help="processes decoding images for prepare.decode_cache  [default: one per CPU core]")
@PROGRESS_OPTION
def prepare(params_path: str, out_dir: str, workers: int | None, progress: bool) -> None:
    """Read the dataset named by prepare.dataset, split it, write a compact prepared copy."""
    params = load_params(params_path)
    ensure_folder_writable(out_dir, PREPARED_FILES)
    cfg = params.prepare
    root = dataset_root(cfg.root, params_path)
    source = limit_per_class(read_source(cfg.dataset, root), cfg.max_per_class, params.base.seed)
    is_test = choose_split(source, cfg.split, cfg.test_fraction, params.base.seed)
    problem = split_problem(source.labels, is_test, source.class_names)
    if problem:
        raise ParamsError(f"{params_path}: prepare (dataset {cfg.dataset}, split {cfg.split}, test_fraction "
                          f"{cfg.test_fraction}, max_per_class {cfg.max_per_class}): {problem}")
    decoded = None
    if cfg.decode_cache:  # decoded lazily, streamed into the prepared folder as it is written
        decoded = decode_images(root, source.paths, source.image_size, workers, progress=progress)
    data = save_prepared(out_dir, source, is_test, cfg.dataset, root, decoded)
    cache = f", decode cache {data.meta['decoded_size']} px" if data.decoded is not None else ""
    click.echo(f"prepared {cfg.dataset}: {data.meta['n_train']} train / {data.meta['n_test']} test items{cache} "
               f"-> {out_dir}")
