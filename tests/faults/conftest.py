"""A tiny prepared dataset and pretrained model shared by the fault-injection tests."""

import pytest
from support import run, write_params

from catride_core.commands.prepare import prepare
from catride_core.commands.pretrain import pretrain


@pytest.fixture(scope="package")
def tiny(tmp_path_factory):
    """prepare and pretrain on 120 digits: paths of the params, the prepared data and the model."""
    root = tmp_path_factory.mktemp("tiny")
    params = write_params(root)
    data, model = root / "prepared", root / "start.pt"
    for result in (run(prepare, "--params", params, "--out", data),
                   run(pretrain, "--params", params, "--data", data, "--checkpoint", model, "--log", root / "log.csv",
                       "--no-progress")):
        assert result.exit_code == 0, result.output
    return {"root": root, "params": params, "data": data, "model": model}
