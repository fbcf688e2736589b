"""Several processes under torchrun: shards of whole batches, stages whose outputs equal one process's, and
data-parallel training whose objective is one process's objective of the global batch."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from support import ROOT, md5s, run, write_params
from torch import nn
from torch.utils.data import TensorDataset

from catride_core.artifacts.checkpoints import read_checkpoint
from catride_core.commands.common import check_shareable
from catride_core.commands.evaluate import evaluate
from catride_core.commands.prepare import prepare
from catride_core.commands.pretrain import pretrain
from catride_core.defenses.tride import anp_loss, cap_loss
from catride_core.distributed import World, distributed
from catride_core.errors import ParamsError, TrainingError
from catride_core.names import ATTACKS
from catride_core.training import benign_step, fit


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


def launcher(processes=None):
    """The command line start of a stage script as dvc.yaml runs it, or under torchrun, and its environment:
    one CPU thread per process, as torchrun sets."""
    words = [sys.executable] if processes is None else [
        sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}"]
    return words, {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}


def launch(*words, processes=None):
    """Run a stage script (see ``launcher``); its stdout."""
    start, env = launcher(processes)
    result = subprocess.run([*start, *map(str, words)], cwd=ROOT, env=env, capture_output=True, text=True,
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
        # only rank 0 reports: one metrics table, one attack table, one output line
        assert sum(line.split()[:2] in (["metric", "value"], ["attack", "score"]) or line.startswith("-> ")
                   for line in lines) == 3, printed
        outputs[processes] = files(out)
    attack_files = {f"attacks/{name}.{ext}" for name in ATTACKS for ext in ("json", "csv", "pt")}
    assert set(outputs[None]) == {"benign.json"} | attack_files
    assert outputs[2] == outputs[None]


@pytest.mark.parametrize("pairs, size", [(8, 2), (5, 2), (4, 3), (2, 2), (12, 4)])
def test_pair_shares_are_contiguous_cover_every_pair_once_and_equal_when_they_can_be(pairs, size):
    shares = World(0, size).pair_shares(pairs)
    assert [i for share in shares for i in share] == list(range(pairs))
    lengths = [len(share) for share in shares]
    assert max(lengths) - min(lengths) <= 1
    assert pairs % size or len(set(lengths)) == 1


def test_pairs_per_batch_must_be_shared_equally():
    check_shareable("params.yaml", "finetune.pairs_per_batch", 8, 4)
    with pytest.raises(ParamsError, match=r"params.yaml: finetune.pairs_per_batch = 6 .* 4 processes"):
        check_shareable("params.yaml", "finetune.pairs_per_batch", 6, 4)


def test_a_last_batch_with_fewer_pairs_than_processes_is_refused_before_training():
    # 10 anchors in batches of 4 pairs: the last batch holds 2 pairs, too few for 3 processes
    labels = torch.arange(10) % 5
    data = TensorDataset(torch.rand(10, 1, 2, 2), labels)
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 3))
    with pytest.raises(TrainingError, match="holds 2 SPC-2 pairs, fewer than the 3 processes"):
        fit(model, torch.optim.SGD(model.parameters(), lr=0.1), data, labels, benign_step, lambda m: {}, epochs=1,
            pairs_per_batch=4, seed=0, margin=0.2, miner="random", device=torch.device("cpu"), world=World(0, 3))


def _global_batch_quantities(rank, size, init_file):
    """One of two gloo processes: M_lambda and D_near of gathered shares are those of the whole batch."""
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=size)
    try:
        world = World(rank, size)
        # 5 triplets shared 2 + 3, every process holding the same global tensors
        g = torch.Generator().manual_seed(0)
        anchors, negatives = (nn.functional.normalize(torch.randn(5, 4, generator=g), dim=1) for _ in range(2))
        # positives near their anchors: the batch is not collapsed, so CAP's [ M(D_an) - M(D_ap) ]_+ is > 0
        positives = nn.functional.normalize(anchors + 0.3 * torch.randn(5, 4, generator=g), dim=1)
        shares = world.pair_shares(5)
        counts = [len(share) for share in shares]
        own = shares[rank]

        def global_and_gathered(loss_of):
            full = [t.clone().requires_grad_(True) for t in (positives, negatives)]
            reference = loss_of(*full)
            reference.backward()
            local = [t[own.start : own.stop].clone().requires_grad_(True) for t in (positives, negatives)]
            gathered = [world.gather_shares(t, counts) for t in local]
            assert all(torch.equal(a, b) for a, b in zip(gathered, (positives, negatives)))
            value = loss_of(*gathered)
            value.backward()
            # every process computes the same loss; the gather's backward sums the processes' gradients,
            # size times this process's share of the one-process gradient (DDP's averaging divides it out)
            for full_t, local_t in zip(full, local):
                torch.testing.assert_close(local_t.grad / size, full_t.grad[own.start : own.stop], rtol=0, atol=1e-6)
            return float(reference.detach()), float(value.detach())

        # CAP: [ M(D_an) - M(D_ap) ]_+ over all 5 triplets (lambda 10)
        reference, value = global_and_gathered(lambda p, n: cap_loss(anchors, p, n, 10.0, True))
        assert value == pytest.approx(reference, abs=1e-6) and reference > 0
        # ANP, anchors moved a little: the brake is 0 and gamma [ D_near - s_aa ]_+ > 0, D_near the mean of
        # the 2 smallest of the 5 D_an: a global order statistic, which no process could find in its share
        shifted = nn.functional.normalize(anchors + 0.05 * torch.randn(5, 4, generator=g), dim=1)
        reference, value = global_and_gathered(lambda p, n: anp_loss(shifted, anchors, p, n, 10.0, True))
        assert value == pytest.approx(reference, abs=1e-6) and reference > 0

        # replicas that differ are found by every process
        torch.manual_seed(0)
        model = nn.Linear(3, 2)
        assert world.diverged(model) == []
        if rank == 1:
            with torch.no_grad():
                model.bias[0] += 1e-6
        assert world.diverged(model) == (["bias"] if rank == 1 else ["(on another process)"])
    finally:
        dist.destroy_process_group()


def test_gathered_shares_give_the_global_batch_objective_and_its_gradient(tmp_path):
    mp.spawn(_global_batch_quantities, args=(2, str(tmp_path / "rendezvous")), nprocs=2)


@pytest.mark.slow
def test_ca_tride_on_two_processes_trains_the_objective_of_one(tmp_path):
    # 100 train anchors in one batch of 100 pairs: each epoch is one step, so each log row is one step's
    # statistics; epoch 1 is CAP at step 0, epoch 2 ANP; the full step size from step 0 (ramp off), so the
    # first step's inner PGD runs; a resumable state after each step (rank 0 writes it, every rank loads it)
    params = write_params(tmp_path, {
        "finetune": {"epochs": 2, "pairs_per_batch": 100, "steps": 2, "ca_tride": {"ramp": "off"}},
        "base": {"checkpoint_every": 1},
    })
    data, start = tmp_path / "prepared", tmp_path / "start.pt"
    assert run(prepare, "--params", params, "--out", data).exit_code == 0
    assert run(pretrain, "--params", params, "--data", data, "--checkpoint", start, "--log", tmp_path / "pre.csv",
               "--no-progress").exit_code == 0
    outputs, printed = {}, {}
    for processes in (None, 2):
        out = tmp_path / f"processes-{processes or 1}"
        # "--" ends torchrun's options: it would take --start and --log for its --start-method and --log-dir
        printed[processes] = launch(*(["--"] if processes else []), "stages/finetune.py", "--params", params,
                                    "--data", data, "--start", start, "--model", "ca_tride",
                                    "--checkpoint", out / "ca_tride.pt", "--log", out / "log.csv", "--no-progress",
                                    processes=processes)
        outputs[processes] = out
    # only rank 0 reports and writes: the same files as one process, and the state is gone
    assert [line.startswith("ca_tride: final test R@1") for line in printed[2].splitlines()].count(True) == 1
    assert set(files(outputs[2])) == set(files(outputs[None])) == {"ca_tride.pt", "log.csv"}
    one, two = (pd.read_csv(outputs[p] / "log.csv") for p in (None, 2))
    assert list(one["anp"]) == list(two["anp"]) == [0.0, 1.0] and list(two["pgd_steps"]) == [2.0, 2.0]
    # the first step: the same loss, inner objective and collapseness of the same global batch; the processes
    # embed and perturb their halves, so only float summation order differs
    for key in ("loss", "adv_loss", "collapseness"):
        assert abs(two[key][0] - one[key][0]) <= 1e-5, key
    # the second step starts from weights that differ by that rounding, which Adam's first step makes as large
    # as the learning rate where a gradient is ~0; its loss still agrees closely
    assert abs(two["loss"][1] - one["loss"][1]) <= 1e-3
    # every process ended with rank 0's weights: fit checks it (World.diverged, tested above) and fails otherwise


@pytest.mark.slow
def test_two_processes_stopped_mid_epoch_resume_to_the_files_of_an_uninterrupted_run(tmp_path):
    # 100 train anchors in batches of 8 pairs: 13 steps an epoch; rank 0 saves a state every 2 steps
    params = write_params(tmp_path, {"finetune": {"epochs": 2, "pairs_per_batch": 8, "steps": 1},
                                     "base": {"checkpoint_every": 2}})
    data, start = tmp_path / "prepared", tmp_path / "start.pt"
    assert run(prepare, "--params", params, "--out", data).exit_code == 0
    assert run(pretrain, "--params", params, "--data", data, "--checkpoint", start, "--log", tmp_path / "pre.csv",
               "--no-progress").exit_code == 0

    def args(name):
        return ["--", "stages/finetune.py", "--params", params, "--data", data, "--start", start, "--model",
                "ca_tride", "--checkpoint", tmp_path / f"{name}.pt", "--log", tmp_path / f"{name}.csv",
                "--state", tmp_path / f"{name}.state", "--no-progress"]

    launch(*args("whole"), processes=2)
    words, env = launcher(2)
    stopped = subprocess.Popen([*words, *map(str, args("stopped"))], cwd=ROOT, env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline, progress = time.time() + 240, None
    while time.time() < deadline and stopped.poll() is None:
        try:
            progress = torch.load(tmp_path / "stopped.state", weights_only=True)["progress"]
        except Exception:  # noqa: BLE001 - not written yet, or being replaced
            progress = None
        if progress is not None and progress["epoch"] == 0 and progress["batch"] >= 2:
            stopped.send_signal(signal.SIGTERM)  # torchrun passes it on to both processes
            break
        time.sleep(0.05)
    assert stopped.wait(timeout=60) != 0 and progress is not None, "finetune ended before it could be stopped"
    assert not (tmp_path / "stopped.pt").exists() and (tmp_path / "stopped.state").exists()
    launch(*args("stopped"), processes=2)
    # both processes loaded rank 0's state: the resumed run ends where the uninterrupted one does, bit for bit
    whole, resumed = (read_checkpoint(tmp_path / f"{name}.pt")["state_dict"] for name in ("whole", "stopped"))
    assert all(torch.equal(whole[key], resumed[key]) for key in whole)
    assert not (tmp_path / "stopped.state").exists()
    # and in the same files (md5), the checkpoint included, as DVC tracks them
    for name in ("whole", "stopped"):
        assert run(evaluate, "--params", params, "--data", data, "--checkpoint", tmp_path / f"{name}.pt",
                   "--metrics", tmp_path / f"{name}.json").exit_code == 0
    assert md5s(*(tmp_path / f"stopped.{ext}" for ext in ("pt", "csv", "json"))) == \
        md5s(*(tmp_path / f"whole.{ext}" for ext in ("pt", "csv", "json")))


class ReadLog(torch.utils.data.Dataset):
    """A TensorDataset that records every index read, and a random draw per item (a stand-in for a random crop)."""

    def __init__(self, images, labels):
        self.images, self.labels, self.read = images, labels, []

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, index):
        self.read.append(int(index))
        return self.images[index] + 0.01 * torch.rand(()), self.labels[index]


def _data():
    g = torch.Generator().manual_seed(0)
    labels = torch.arange(30) % 5
    return torch.rand(30, 1, 2, 2, generator=g), labels


def _train_one_epoch(world):
    """One epoch of 4 batches (pairs 8, 8, 8, 6) of a linear embedder: the log row, the weights, the indices read."""
    images, labels = _data()
    data = ReadLog(images, labels)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 3))
    rows, _ = fit(model, torch.optim.SGD(model.parameters(), lr=0.1), data, labels, benign_step, lambda m: {},
                  epochs=1, pairs_per_batch=8, seed=0, margin=0.2, miner="random", device=torch.device("cpu"),
                  world=world)
    return rows[0], [p.detach().clone() for p in model.parameters()], data.read


def _per_rank_reading(rank, size, init_file, out):
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=size)
    try:
        torch.save(_train_one_epoch(World(rank, size)), f"{out}.{rank}")
    finally:
        dist.destroy_process_group()


def test_each_process_reads_only_its_share_and_training_is_that_of_one(tmp_path):
    from catride_core.data.sampler import SPC2Sampler
    from catride_core.training import RankBatches

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as each spawned process runs; given back, or later in-process runs would round otherwise
    try:
        one_row, one_weights, one_read = _train_one_epoch(World())
    finally:
        torch.set_num_threads(threads)
    mp.spawn(_per_rank_reading, args=(2, str(tmp_path / "rendezvous"), str(tmp_path / "rank")), nprocs=2)
    ranks = [torch.load(tmp_path / f"rank.{rank}", weights_only=True) for rank in range(2)]
    # each process read the rows of its pairs of every batch, nothing else; together, what one process read
    sampler = SPC2Sampler(_data()[1].numpy(), 8, 0)
    for rank, (_, _, read) in enumerate(ranks):
        own = [index for batch in RankBatches(sampler, 0, 0, World(rank, 2)) for index, _ in batch]
        assert read == own and len(read) == 30  # 4 + 4 + 4 + 3 pairs of 8, 8, 8, 6
    assert sorted(ranks[0][2] + ranks[1][2]) == sorted(one_read)
    # the same random draws, gathered: the same steps as one process, up to float summation order
    for row, weights, _ in ranks:
        assert row["loss"] == pytest.approx(one_row["loss"], abs=1e-6)
        for mine, theirs in zip(weights, one_weights, strict=True):
            torch.testing.assert_close(mine, theirs, rtol=0, atol=1e-6)
