"""Points 1-2: loading a file never runs code from it; written files are readable by the team."""

import os
import stat

import torch
from support import Planted, printed, run

from catride_core.commands.evaluate import evaluate
from catride_core.commands.finetune import finetune
from catride_core.commands.prepare import prepare


def test_a_checkpoint_holding_code_is_refused_and_its_code_never_runs(tiny, tmp_path):
    marker = tmp_path / "the-code-ran"
    payload = torch.load(tiny["model"], weights_only=True)
    hostile = tmp_path / "hostile.pt"
    torch.save({**payload, "params": {**payload["params"], "extra": Planted(marker)}}, hostile)
    for command, args in (
        (evaluate, ["--data", tiny["data"], "--checkpoint", hostile, "--metrics", tmp_path / "m.json"]),
        (finetune, ["--data", tiny["data"], "--start", hostile, "--model", "pretrained",
                    "--checkpoint", tmp_path / "out.pt", "--log", tmp_path / "log.csv", "--no-progress"]),
    ):
        result = run(command, "--params", tiny["params"], *args)
        assert result.exit_code == 1, result.output
        assert "hostile.pt: refused: holds more than tensors and plain data" in result.output
        assert len(printed(result).splitlines()) == 1
    assert not marker.exists()
    assert not (tmp_path / "m.json").exists() and not (tmp_path / "out.pt").exists()


def test_written_files_get_the_users_umask(tiny, tmp_path):
    old = os.umask(0o022)
    try:
        assert run(prepare, "--params", tiny["params"], "--out", tmp_path / "prepared").exit_code == 0
    finally:
        os.umask(old)
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in [tmp_path / "prepared", *(tmp_path / "prepared").iterdir()]}
    assert modes == {"prepared": 0o755, "images.npy": 0o644, "manifest.csv": 0o644, "meta.json": 0o644}
