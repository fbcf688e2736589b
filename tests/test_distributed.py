"""Several processes under torchrun: shards of whole batches, and stages whose outputs equal one process's."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch
import torch.distributed as dist
from support import ROOT, run, write_params

from catride_core.commands.prepare import prepare
from catride_core.commands.pretrain import pretrain
from catride_core.distributed import World, distributed
from catride_core.names import ATTACKS


@pytest.mark.parametrize("n, batch_size, size", [(24, 5, 2), (60, 7, 3), (10, 4, 5), (3, 8, 2), (0, 4, 2), (100, 1, 7)])
def test_shards_are_contiguous_whole_batches_that_cover_every_item_once(n, batch_size, size):
    shards = [World(rank, size).shard(n, batch_size) for rank in range(size)]
    assert [i for shard in shards for i in shard] == list(range(n))
    n_batches = -(-n // batch_size)
    for shard in shards:
        assert shard.start % batch_size == 0 and (shard.stop % batch_size == 0 or shard.stop == n)
    # batches dealt as evenly as possible
    counts = [-(-len(shard) // batch_size) for shard in shards]
    assert sum(counts) == n_batches and max(counts) - min(counts) <= 1


def test_one_process_is_the_whole_world(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    with distributed(torch.device("cpu")) as world:
        assert world == World() and world.is_main and not dist.is_initialized()
        rows = torch.arange(6.0).view(3, 2)
        assert world.gather(rows) is rows and world.shard(7, 3) == range(7)


def launch(*words, processes=None):
    """A stage script as dvc.yaml runs it, or under torchrun; one CPU thread per process, as torchrun sets."""
    launcher = [sys.executable] if processes is None else [
        sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}"]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    result = subprocess.run([*launcher, *map(str, words)], cwd=ROOT, env=env, capture_output=True, text=True,
                            timeout=300, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def files(folder):
    return {path.relative_to(folder).as_posix(): path.read_bytes() for path in sorted(folder.rglob("*"))
            if path.is_file()}


@pytest.mark.slow
def test_evaluate_and_attack_on_two_processes_write_the_bytes_of_one(tmp_path):
    # evaluate: one embedding batch (the second process embeds nothing), rankings in 3 blocks;
    # attack: 24 queries in 5 batches (10 and 14 a process), random starts, saved images across both shards
    params = write_params(tmp_path, {
        "evaluate": {"recall_at": [1, 2], "batch_size": 32, "block_size": 10},
        "attack": {"names": list(ATTACKS), "steps": 1, "max_queries": None, "batch_size": 5, "save_images": 12,
                   "random_start": True},
    })
    data, start = tmp_path / "prepared", tmp_path / "start.pt"
    assert run(prepare, "--params", params, "--out", data).exit_code == 0
    assert run(pretrain, "--params", params, "--data", data, "--checkpoint", start, "--log", tmp_path / "log.csv",
               "--no-progress").exit_code == 0
    common = ("--params", params, "--data", data, "--checkpoint", start)
    outputs = {}
    for processes in (None, 2):
        out = tmp_path / f"processes-{processes or 1}"
        printed = launch("stages/evaluate.py", *common, "--metrics", out / "benign.json", processes=processes)
        printed += launch("stages/attack.py", *common, "--out", out / "attacks", "--no-progress", processes=processes)
        lines = printed.splitlines()
        assert sum(line.startswith(("R@1 ", "gtt: ", "-> ")) for line in lines) == 3  # only rank 0 reports
        outputs[processes] = files(out)
    attack_files = {f"attacks/{name}.{ext}" for name in ATTACKS for ext in ("json", "csv", "pt")}
    assert set(outputs[None]) == {"benign.json"} | attack_files
    assert outputs[2] == outputs[None]
