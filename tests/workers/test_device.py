"""Where a trial trains: the GPU when the worker sees one, the CPU otherwise."""

from __future__ import annotations

import pytest
import torch

from spx.workers.config import TrialConfig
from spx.workers.loop import ListReporter, build_state, train
from spx.workers.tasks import build_task

FLAT = {
    "train.steps": 12,
    "model.width": 16,
    "model.depth": 2,
    "prune.method": "magnitude",
    "prune.sparsity": 0.5,
    "prune.schedule.start": 0.0,
    "prune.schedule.end": 0.5,
    "prune.schedule.every": 3,
}


def test_without_a_gpu_a_trial_and_its_data_stay_on_the_cpu():
    cfg = TrialConfig.from_flat("digits-mlp", FLAT)
    state = build_state(cfg, build_task("digits-mlp"))
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    assert state.device == torch.device("cpu")
    assert {p.device.type for p in state.model.parameters()} == {"cpu"}


def test_a_deepspeed_trial_stays_on_the_cpu_even_beside_a_gpu(monkeypatch):
    from spx.workers.loop import trial_device

    pytest.importorskip("deepspeed")  # validating engine: deepspeed asks DeepSpeed
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    cfg = TrialConfig.from_flat("digits-mlp", {**FLAT, "engine": "deepspeed"})
    assert trial_device(cfg) == torch.device("cpu")
    assert trial_device(TrialConfig.from_flat("digits-mlp", FLAT)) == torch.device("cuda", 0)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("task_name", ["digits-mlp", "code-gpt"])
def test_on_the_gpu_a_trial_trains_there_and_reports_what_the_cpu_does(task_name, monkeypatch):
    flat = {**FLAT, "model.heads": 2, "model.context": 16} if task_name == "code-gpt" else FLAT
    cfg = TrialConfig.from_flat(task_name, flat)
    task = build_task(task_name)
    state = build_state(cfg, task)
    assert state.device.type == "cuda"
    assert {p.device.type for p in state.model.parameters()} == {"cuda"}
    on_gpu = train(cfg, task, ListReporter())
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    on_cpu = train(cfg, task, ListReporter())
    assert on_gpu["model/sparsity"] == on_cpu["model/sparsity"]
    assert on_gpu["val/loss"] == pytest.approx(on_cpu["val/loss"], rel=2e-2)
