"""Point 11: what is bit-reproducible, and the record that tells why two machines can differ."""

import torch
from support import run, write_params

from catride_core.artifacts.checkpoints import read_checkpoint
from catride_core.commands.evaluate import evaluate
from catride_core.commands.pretrain import pretrain
from catride_core.runtime import device_line, seed_everything


def test_deterministic_algorithms_are_required_not_only_warned_about():
    seed_everything(0)
    assert torch.are_deterministic_algorithms_enabled()
    assert not torch.is_deterministic_algorithms_warn_only_enabled()


def test_same_params_same_machine_give_the_same_weights_and_the_checkpoint_says_what_they_depend_on(tiny, tmp_path):
    params = write_params(tmp_path)
    payloads = []
    for name in ("a", "b"):
        result = run(pretrain, "--params", params, "--data", tiny["data"], "--checkpoint", tmp_path / f"{name}.pt",
                     "--log", tmp_path / f"{name}.csv", "--no-progress")
        assert result.exit_code == 0, result.output
        payloads.append(read_checkpoint(tmp_path / f"{name}.pt"))
    first, second = (p["state_dict"] for p in payloads)
    assert all(torch.equal(first[k], second[k]) for k in first)
    assert payloads[0]["runtime"] == {
        "torch": str(torch.__version__),
        "threads": torch.get_num_threads(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
    }


def test_every_computing_stage_prints_its_device_first(tiny, tmp_path):
    result = run(evaluate, "--params", write_params(tmp_path, {"base": {"device": "cpu"}}), "--data", tiny["data"],
                 "--checkpoint", tiny["model"], "--metrics", tmp_path / "m.json")
    assert result.exit_code == 0, result.output
    assert result.stderr.splitlines()[0] == device_line(torch.device("cpu"), "cpu")
    assert "device:" not in result.stdout  # the metrics table stays clean
