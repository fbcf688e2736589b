"""Atomic writers: a failure mid-write leaves the old file and no temp file; written files follow the umask;
torch files of equal content are equal bytes."""

import io
import json
import os
import stat
from collections import OrderedDict

import pandas as pd
import pytest
import torch

from catride_core.artifacts.files import (
    atomic_path,
    output_folder,
    read_csv,
    read_json,
    rounded,
    save_torch,
    write_csv,
    write_json,
)
from catride_core.errors import ArtifactError

#: the names an output folder of these tests owns
OWNED = {"es.json", "gtm.json"}


def test_failure_mid_write_keeps_the_old_file_and_leaves_no_temp(tmp_path):
    target = tmp_path / "metrics.json"
    write_json(target, {"R@1": 1.0})
    with pytest.raises(RuntimeError, match="disk full"), atomic_path(target) as tmp:
        tmp.write_text('{"R@1": 2')  # half-written
        raise RuntimeError("disk full")
    assert json.loads(target.read_text()) == {"R@1": 1.0}
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]


def test_failure_mid_write_of_a_folder_keeps_the_old_folder(tmp_path):
    target = tmp_path / "attacks"
    with output_folder(target, OWNED) as tmp:
        (tmp / "es.json").write_text("{}")
    with pytest.raises(KeyError), output_folder(target, OWNED) as tmp:
        (tmp / "es.json").write_text('{"new": 1}')
        (tmp / "gtm.json").write_text("{}")
        raise KeyError("boom")
    assert [p.name for p in target.iterdir()] == ["es.json"] and (target / "es.json").read_text() == "{}"
    assert [p.name for p in tmp_path.iterdir()] == ["attacks"]


def test_a_folder_output_replaces_its_own_files_and_removes_only_its_stale_ones(tmp_path):
    target = tmp_path / "attacks"
    with output_folder(target, OWNED) as tmp:
        (tmp / "es.json").write_text("old")
        (tmp / "gtm.json").write_text("old")
    with output_folder(target, OWNED) as tmp:
        (tmp / "es.json").write_text("new")
    # gtm.json is an earlier run's: this run owns the name and did not write it
    assert sorted(p.name for p in target.iterdir()) == ["es.json"] and (target / "es.json").read_text() == "new"


def test_a_writer_cannot_leave_a_name_it_does_not_own(tmp_path):
    with pytest.raises(ValueError, match=r"\['notes.txt'\], names it does not own"), \
            output_folder(tmp_path / "attacks", OWNED) as tmp:
        (tmp / "notes.txt").write_text("")
    assert list(tmp_path.iterdir()) == []


def test_written_files_follow_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        write_json(tmp_path / "a.json", {})
        with output_folder(tmp_path / "folder", OWNED):
            pass
    finally:
        os.umask(old)
    # mkstemp alone would give 0600: a team sharing the cache could not read it
    assert stat.S_IMODE((tmp_path / "a.json").stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / "folder").stat().st_mode) == 0o755


def test_json_is_key_sorted_and_byte_stable(tmp_path):
    write_json(tmp_path / "a.json", {"b": 1, "a": rounded({"x": 1 / 3})["x"]})
    write_json(tmp_path / "b.json", {"a": round(1 / 3, 4), "b": 1})
    assert (tmp_path / "a.json").read_bytes() == (tmp_path / "b.json").read_bytes()
    assert (tmp_path / "a.json").read_text() == '{\n  "a": 0.3333,\n  "b": 1\n}\n'


def test_read_json_names_the_file(tmp_path):
    with pytest.raises(ArtifactError, match="missing.json: missing"):
        read_json(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ArtifactError, match="bad.json: not a readable JSON file"):
        read_json(tmp_path / "bad.json")
    (tmp_path / "list.json").write_text("[1]")
    with pytest.raises(ArtifactError, match="list.json: expected a JSON object"):
        read_json(tmp_path / "list.json")


def test_csv_keeps_every_digit_when_asked(tmp_path):
    table = pd.DataFrame({"x": [1 / 3]})
    write_csv(tmp_path / "short.csv", table)
    write_csv(tmp_path / "full.csv", table, float_format=None)
    assert pd.read_csv(tmp_path / "short.csv")["x"][0] == 0.333333
    assert pd.read_csv(tmp_path / "full.csv")["x"][0] == 1 / 3


def test_read_csv_keeps_the_asked_numeric_columns_and_names_the_file_otherwise(tmp_path):
    path = tmp_path / "es.csv"
    write_csv(path, pd.DataFrame({"index": [0, 1], "ES:D/clean": [0.0, 0.5], "note": ["a", "b"]}), float_format=None)
    table = read_csv(path, ["index", "ES:D/clean"])
    assert list(table.columns) == ["index", "ES:D/clean"] and table["ES:D/clean"].tolist() == [0.0, 0.5]
    with pytest.raises(ArtifactError, match=r"es.csv: lacks the columns \['ES:R/clean'\]"):
        read_csv(path, ["index", "ES:R/clean"])
    with pytest.raises(ArtifactError, match=r"es.csv: the columns \['note'\] hold something other than numbers"):
        read_csv(path, ["note"])
    with pytest.raises(ArtifactError, match="gtm.csv: missing"):
        read_csv(tmp_path / "gtm.csv", ["index"])
    path.write_bytes(b"")
    with pytest.raises(ArtifactError, match="es.csv: not a readable CSV file"):
        read_csv(path, ["index"])


def payload_of_a_fresh_run():
    """A checkpoint-like payload as a run that never stopped holds it: its key strings are the interned literals,
    one object wherever they appear; tensors are views of one storage."""
    weights = torch.arange(12.0).view(3, 4)
    return {
        "state_dict": OrderedDict([("weight", weights.t()), ("bias", weights[0])]),
        "optimizer": {"state": {0: {"step": torch.tensor(3.0), "exp_avg": weights[1:]}},
                      "param_groups": [{"lr": 1e-3, "betas": (0.9, 0.999), "params": [0]}]},
        "state": {"step": 3, "epoch": 1, "done": True, "note": None},
    }


def test_equal_content_of_another_history_saves_to_the_same_bytes(tmp_path):
    fresh = payload_of_a_fresh_run()
    # the same content as a resumed run holds it: the optimiser's state unpickled from a state file, so its
    # strings are new objects, no longer the literal "step" of the training loop's own record; each tensor in a
    # storage of its own
    buffer = io.BytesIO()
    torch.save(fresh, buffer)
    resumed = torch.load(io.BytesIO(buffer.getvalue()), weights_only=True)
    resumed["state"] = {"step": 3, "epoch": 1, "done": True, "note": None}
    resumed["state_dict"] = {key: value.clone() for key, value in resumed["state_dict"].items()}

    def torch_bytes(payload):
        plain = io.BytesIO()
        torch.save(payload, plain)
        return plain.getvalue()

    # what the test guards against: torch.save alone writes these two differently
    assert torch_bytes(fresh) != torch_bytes(resumed)
    # each under another name in another folder: the archive inside does not take the file's name
    save_torch(tmp_path / "fresh.pt", fresh)
    save_torch(tmp_path / "resumed" / "model.pt", resumed)
    assert (tmp_path / "fresh.pt").read_bytes() == (tmp_path / "resumed" / "model.pt").read_bytes()

    loaded = torch.load(tmp_path / "fresh.pt", weights_only=True)
    assert list(loaded["state_dict"]) == ["weight", "bias"]  # dict order is content: kept
    assert all(torch.equal(loaded["state_dict"][k], fresh["state_dict"][k]) for k in fresh["state_dict"])
    assert torch.equal(loaded["optimizer"]["state"][0]["exp_avg"], fresh["optimizer"]["state"][0]["exp_avg"])
    assert loaded["optimizer"]["param_groups"] == fresh["optimizer"]["param_groups"]
    assert loaded["state"] == fresh["state"]
    # saving what was loaded gives the same bytes again
    save_torch(tmp_path / "again.pt", loaded)
    assert (tmp_path / "again.pt").read_bytes() == (tmp_path / "fresh.pt").read_bytes()


def test_a_payload_holding_more_than_plain_data_is_refused_before_writing(tmp_path):
    with pytest.raises(TypeError, match="a builtins.set"):
        save_torch(tmp_path / "model.pt", {"labels": {1, 2}})
    assert list(tmp_path.iterdir()) == []
