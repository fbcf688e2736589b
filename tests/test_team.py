"""The team workflow as a user runs it (README "Sharing results through a DVC remote", "Several seeds"):
a real git and dvc, a local folder as the remote, a second clone, and DVC's experiment queue."""

from __future__ import annotations

import csv
import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from support import tiny_project


class Shell:
    """Commands as a user types them, in a clean environment: the venv's dvc first on PATH, a fresh HOME."""

    def __init__(self, home: Path) -> None:
        home.mkdir()
        (home / ".gitconfig").write_text("[user]\n\tname = Test User\n\temail = test@example.org\n")
        self.env = {"PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin", "HOME": str(home)}

    def __call__(self, cwd: Path, *command: str) -> str:
        result = subprocess.run(command, check=False, cwd=cwd, env=self.env, capture_output=True, text=True)
        assert result.returncode == 0, f"{' '.join(command)} failed:\n{result.stdout}\n{result.stderr}"
        return result.stdout


def ran(output: str) -> set[str]:
    return set(re.findall(r"Running stage '([^']+)'", output))


def wait_for_queue(sh: Shell, cwd: Path, timeout: float = 900) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = sh(cwd, "dvc", "queue", "status")
        if not re.search(r"\b(Queued|Running)\b", status):
            return status
        time.sleep(5)
    raise AssertionError(f"the queue did not finish in {timeout} s:\n{status}")


def failures(sh: Shell, cwd: Path, status: str) -> str:
    """Each failed task's log, so that a failure in CI says why (once: "database or disk is full")."""
    names = re.findall(r"^\s*\w+\s+(\S+)\s+.*\bFailed\s*$", status, flags=re.MULTILINE)
    return "\n".join(f"--- {name}\n{sh(cwd, 'dvc', 'queue', 'logs', name)}" for name in names)


@pytest.mark.slow
def test_push_clone_pull_reruns_nothing_and_the_queue_runs_seeds(tmp_path):
    sh = Shell(tmp_path / "home")
    work, clone, remote = tmp_path / "work", tmp_path / "clone", tmp_path / "remote"
    tiny_project(work)

    # one researcher: run, commit the lock and metrics, push the cache
    sh(work, "git", "init", "--quiet")
    sh(work, "dvc", "init", "--quiet")
    sh(work, "dvc", "config", "core.analytics", "false")
    sh(work, "dvc", "config", "core.check_update", "false")
    sh(work, "dvc", "remote", "add", "-d", "team", str(remote))
    sh(work, "dvc", "repro")
    sh(work, "git", "add", "-A")
    sh(work, "git", "commit", "--quiet", "-m", "results")
    sh(work, "dvc", "push")

    # another: clone, pull, and nothing needs recomputing
    sh(tmp_path, "git", "clone", "--quiet", str(work), str(clone))
    assert not (clone / "models" / "ca_tride.pt").exists()
    sh(clone, "dvc", "pull")
    assert (clone / "models" / "ca_tride.pt").read_bytes() == (work / "models" / "ca_tride.pt").read_bytes()
    again = sh(clone, "dvc", "repro")
    assert ran(again) == set(), again
    assert json.loads(sh(clone, "dvc", "metrics", "diff", "--json") or "{}") == {}
    assert json.loads(sh(clone, "dvc", "status", "--json") or "{}") == {}

    # seeds through DVC's queue, then the table over them (the workspace is seed 0). A queued experiment
    # runs in a temporary copy of the commit: it must import that copy's catride_core, not the checkout
    # the venv's editable install points at (here the repository under test), so mark the clone's code
    command = clone / "catride_core" / "commands" / "evaluate.py"
    command.write_text(command.read_text() + '\nprint("catride_core of the experiment")\n')
    sh(clone, "git", "commit", "--quiet", "-am", "mark this checkout's code")
    sh(clone, "dvc", "repro")  # the workspace is seed 0 of the marked code too
    for seed in (1, 2):
        sh(clone, "dvc", "exp", "run", "--queue", "-S", f"base.seed={seed}")
    sh(clone, "dvc", "queue", "start")
    status = wait_for_queue(sh, clone)
    assert "Failed" not in status, f"{status}\n{failures(sh, clone, status)}"
    shown = json.loads(sh(clone, "dvc", "exp", "show", "--json"))
    revisions = [revision for entry in shown for experiment in entry.get("experiments") or []
                 for revision in experiment["revs"]]
    seeds = {revision["data"]["params"]["params.yaml"]["data"]["base"]["seed"] for revision in revisions}
    names = [revision["name"] for revision in revisions]
    assert seeds == {1, 2}
    for name in names:
        assert "catride_core of the experiment" in sh(clone, "dvc", "queue", "logs", name)
    sh(clone, "catride", "seeds", "--table", "seeds.csv", "--markdown", "seeds.md")
    rows = {(row["model"], row["score"]): row for row in csv.DictReader((clone / "seeds.csv").open())}
    assert rows[("ca_tride", "R@1")]["n"] == "3" and rows[("ca_tride", "R@1")]["seeds"] == "0 1 2"
    # the experiments really differ by seed: the spread of R@1 over three splits is not zero
    assert float(rows[("pretrained", "R@1")]["std"]) > 0
    assert "| ca_tride |" in (clone / "seeds.md").read_text()
