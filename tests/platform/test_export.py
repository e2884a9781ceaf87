"""Loading an exported model folder runs no code it carries unless the caller trusts it."""

from __future__ import annotations

import json
import sys

import pytest
import torch
from safetensors.torch import save_file

from spx.errors import ConfigError
from spx.platform.export import MANIFEST, WEIGHTS, load_model
from spx.workers.config import TrialConfig

# A module that leaves a mark the moment it is imported, as a hostile one would act.
PLANTED = """
from pathlib import Path

from torch import nn

from spx.workers.tasks import Task

Path(__file__).with_name("IMPORTED").write_text("ran")


class Planted(Task):
    name = "planted"

    def build_model(self, cfg):
        return nn.Linear(3, 2)
"""


@pytest.fixture
def model_folder(tmp_path, monkeypatch):
    """A model folder naming the task ``planted_task:Planted``, whose module sits in the
    folder and on the import path (as the current directory is for ``python -c``)."""
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "planted_task.py").write_text(PLANTED)
    cfg = TrialConfig(task="planted_task:Planted")
    manifest = {"sweep": "x", "trial": 0, "task": cfg.task, "config": cfg.model_dump(mode="json")}
    (folder / MANIFEST).write_text(json.dumps(manifest))
    save_file({"weight": torch.ones(2, 3), "bias": torch.zeros(2)}, str(folder / WEIGHTS))
    monkeypatch.syspath_prepend(str(folder))
    yield folder
    sys.modules.pop("planted_task", None)


def test_a_custom_task_is_not_imported_without_trust_code(model_folder):
    with pytest.raises(ConfigError, match="trust_code=True") as err:
        load_model(model_folder)
    assert err.value.field == "task" and err.value.value == "planted_task:Planted"
    assert "planted_task:Planted" in str(err.value)
    assert not (model_folder / "IMPORTED").exists()
    assert "planted_task" not in sys.modules


def test_trust_code_loads_the_custom_task(model_folder):
    model = load_model(model_folder, trust_code=True)
    assert (model_folder / "IMPORTED").read_text() == "ran"
    assert torch.equal(model(torch.ones(1, 3)), torch.full((1, 2), 3.0))
