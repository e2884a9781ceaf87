"""A trial's memory is estimated from its config; one that cannot fit is refused (exit 2)."""

from __future__ import annotations

import re
import sqlite3
import textwrap
from pathlib import Path

import pytest
import torch
from helpers import run_spx

from spx.errors import ConfigError
from spx.platform import sizing
from spx.platform.spec import parse_spec, resolve_trials
from spx.workers.config import TrialConfig
from spx.workers.tasks import build_task

SHAPES = [
    ("digits-mlp", {"model.width": 64, "model.depth": 2, "train.batch_size": 32}),
    ("digits-mlp", {"model.width": 7, "model.depth": 1, "train.batch_size": 5}),
    ("digits-cnn", {"model.width": 8, "model.depth": 3, "train.batch_size": 16}),
    ("digits-cnn", {"model.width": 16, "model.depth": 1, "train.batch_size": 16}),
    ("code-gpt", {"model.width": 32, "model.depth": 2, "model.context": 32, "train.batch_size": 4}),
]
HUGE = textwrap.dedent(
    """
    name: huge
    task: digits-mlp
    fixed: {model.width: 65536, model.depth: 256, train.batch_size: 1000000, train.steps: 10000000}
    """
)


def _saved_activation_bytes(task: str, cfg: TrialConfig) -> int:
    """What autograd keeps for backward in one training step (parameters excluded)."""
    model = build_task(task).build_model(cfg)
    if task == "code-gpt":
        x = torch.randint(256, (cfg.train.batch_size, cfg.model.context))
        batch = (x, torch.randint(256, x.shape))
    else:
        batch = (torch.randn(cfg.train.batch_size, 64), torch.randint(10, (cfg.train.batch_size,)))
    kept: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        kept[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        build_task(task).loss(model, batch)
    weights = {p.untyped_storage().data_ptr() for p in model.parameters()}
    return sum(n for ptr, n in kept.items() if ptr not in weights)


@pytest.mark.parametrize(("task", "flat"), SHAPES, ids=lambda x: str(x))
def test_the_estimate_counts_the_models_parameters_and_covers_its_activations(task, flat):
    cfg = TrialConfig.from_flat(task, flat)
    with torch.device("meta"):
        model = build_task(task).build_model(cfg)
    est = sizing.estimate(cfg)
    assert est is not None
    assert est.params == sum(p.numel() for p in model.parameters())
    saved = _saved_activation_bytes(task, cfg)
    assert saved <= est.activation_bytes <= 3 * saved


def test_optimizer_masks_and_workers_add_state_but_steps_do_not():
    def state(flat, workers=1):
        est = sizing.estimate(TrialConfig.from_flat("digits-mlp", flat), workers)
        assert est is not None
        return est.state_bytes // est.params

    assert state({}) == 16  # weights, grads, two AdamW moments
    assert state({"train.optimizer": "sgd", "train.momentum": 0.0}) == 8
    assert state({"prune.method": "magnitude", "prune.sparsity": 0.5}) == 21
    assert state({"comm.strategy": "sparseloco"}, workers=2) == 28
    assert state({"train.steps": 10_000_000}) == state({"train.steps": 10})


def test_a_custom_task_has_no_estimate_and_is_never_refused(monkeypatch):
    monkeypatch.syspath_prepend(str(Path(__file__).parents[1] / "e2e"))
    spec = parse_spec(HUGE.replace("digits-mlp", "nan_task:NaNAtWidth13"))
    assert sizing.check_fits(spec, resolve_trials(spec), 1, sizing.LOCAL) is None


def test_validate_refuses_a_trial_larger_than_this_machine(tmp_path):
    (tmp_path / "huge.yaml").write_text(HUGE)
    proc = run_spx("sweep", "validate", "huge.yaml", cwd=tmp_path)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    err = " ".join(proc.stderr.split())
    assert "fixed.train.batch_size" in err and "model.width=65536, model.depth=256" in err
    assert "TB" in err and "of this machine's memory, which validate checks" in err
    assert "--force" in err and "Traceback" not in err
    forced = run_spx("sweep", "validate", "huge.yaml", "--force", cwd=tmp_path)
    assert forced.returncode == 0, forced.stderr
    assert re.search(r"memory: the largest trial's tensors take about [\d.]+ TB", forced.stdout)


def test_launch_refuses_what_the_largest_ray_node_cannot_hold(tmp_path):
    (tmp_path / "huge.yaml").write_text(HUGE)
    home = tmp_path / "home"
    proc = run_spx(
        "sweep", "launch", "huge.yaml", "--plain", cwd=tmp_path, env={"SPX_HOME": str(home)}
    )
    assert proc.returncode == 2, proc.stdout + proc.stderr
    err = " ".join(proc.stderr.split())
    assert "that the largest Ray node offers a task" in err and "fixed.train.batch_size" in err
    with sqlite3.connect(home / "spx.db") as db:  # checked before the sweep row is written
        assert db.execute("SELECT count(*) FROM sweeps").fetchone() == (0,)


def test_the_top_of_a_range_is_judged_even_when_no_draw_reaches_it():
    spec = parse_spec(
        "name: r\ntask: digits-mlp\nmethod: random\ntrials: 2\nseed: 1\n"
        "parameters: {model.width: {min: 8, max: 65536, int: true, log: true}}\n"
        "fixed: {model.depth: 64}\n"
    )
    with pytest.raises(ConfigError, match="model.width=65536") as err:
        sizing.check_fits(spec, resolve_trials(spec), 2**30, sizing.LOCAL)
    assert err.value.field == "parameters.model.width"
