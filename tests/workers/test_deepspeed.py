"""``engine: deepspeed``: DeepSpeed's engine runs the inner steps, every pruner hook holds.

The first DeepSpeed run on a machine JIT-builds a communication op (minutes; cached under
~/.cache/torch_extensions afterwards), so these tests are few. The config checks need no
DeepSpeed and always run.
"""

from __future__ import annotations

import pytest
import torch
import torch.multiprocessing as mp

from spx.errors import ConfigError
from spx.workers import config, engine
from spx.workers.config import TrialConfig
from spx.workers.distributed import free_port, init_torch, shutdown_torch
from spx.workers.loop import ListReporter, advance, build_state, restore, save, train
from spx.workers.tasks import build_task

STEPS = 60
PRUNED = {  # digits-mlp at 80 % zeros, pruned gradually over the first half
    "train.steps": STEPS,
    "model.width": 32,
    "train.report_every": 20,
    "prune.method": "magnitude",
    "prune.sparsity": 0.8,
    "prune.schedule.start": 0.0,
    "prune.schedule.end": 0.5,
}


def _cfg(**flat) -> TrialConfig:
    return TrialConfig.from_flat("digits-mlp", {**PRUNED, **flat}, "fixed.")


@pytest.fixture(scope="module")
def deepspeed():
    try:
        import deepspeed
    except Exception as exc:  # not installed, or installed but broken
        pytest.skip(f"deepspeed cannot be imported ({exc}); pip install 'spx[deepspeed]'")
    return deepspeed


@pytest.mark.parametrize(
    ("flat", "field"),
    [
        ({"engine": "deepspeed", "comm.strategy": "diloco"}, "fixed.engine"),
        ({"engine": "deepspeed", "comm.strategy": "sparseloco"}, "fixed.engine"),
        (
            {"engine": "deepspeed", "deepspeed.zero_stage": 2, "prune.method": "rigl"},
            "fixed.deepspeed.zero_stage",
        ),
        (
            {"engine": "deepspeed", "deepspeed.zero_stage": 1, "prune.method": "lottery"},
            "fixed.deepspeed.zero_stage",
        ),
        ({"engine": "deepspeed", "deepspeed.zero_stage": 3}, "fixed.deepspeed.zero_stage"),
        ({"deepspeed.zero_stage": 1}, "fixed.deepspeed.zero_stage"),  # engine torch
    ],
)
def test_unsupported_engine_settings_name_the_key(flat, field, monkeypatch):
    monkeypatch.setattr(config, "deepspeed_installed", lambda: True)
    with pytest.raises(ConfigError) as err:
        _cfg(**flat)
    assert err.value.field == field
    ok = _cfg(engine="deepspeed", **{"deepspeed.zero_stage": 2})  # magnitude runs on ZeRO
    assert ok.deepspeed.zero_stage == 2 and ok.flat()["deepspeed.zero_stage"] == 2


def test_engine_deepspeed_without_deepspeed_installed_is_a_config_error(monkeypatch):
    monkeypatch.setattr(config, "deepspeed_installed", lambda: False)
    with pytest.raises(ConfigError, match=r"spx\[deepspeed\]") as err:
        _cfg(engine="deepspeed")
    assert err.value.field == "fixed.engine"
    assert _cfg().engine == "torch"  # the torch engine never asks


def _zeros_exact(state) -> bool:
    masks = state.pruner.masks
    return all(bool((w[~masks.masks[n]] == 0).all()) for n, w in masks.weights.items())


def test_stage0_prunes_to_the_target_like_the_torch_engine(deepspeed):
    task = build_task("digits-mlp")
    torch_final = train(_cfg(), task, ListReporter())
    rep = ListReporter()
    ds_final = train(_cfg(engine="deepspeed"), task, rep)
    assert ds_final["model/sparsity"] == pytest.approx(0.8, abs=0.005)
    assert [s for s, _ in rep.rows] == [1, 11, 20, 21, 31, 40, 60]  # mask updates reported
    # fp32 DeepSpeed at stage 0 is the same arithmetic: seen equal to the last digit here
    assert ds_final["val/acc"] == pytest.approx(torch_final["val/acc"], abs=0.02)
    assert ds_final["val/loss"] == pytest.approx(torch_final["val/loss"], rel=0.02)


def _run(state, task, batches, until: int) -> None:
    while state.step < until:
        advance(state, task, next(batches))


@pytest.mark.parametrize("stage", [1, 2])
def test_zero_keeps_pruned_master_copies_at_zero_and_resumes_identically(
    deepspeed, stage, tmp_path
):
    cfg = _cfg(engine="deepspeed", **{"deepspeed.zero_stage": stage})
    task = build_task("digits-mlp")
    state = build_state(cfg, task)
    try:
        batches = task.batches(cfg, state.generator)
        _run(state, task, batches, STEPS // 2)
        save(state, tmp_path)
        _run(state, task, batches, STEPS)
        assert state.pruner.masks.sparsity() == pytest.approx(0.8, abs=0.005)
        assert _zeros_exact(state)
        # DeepSpeed's own fp32 master partition and its Adam moments: zero where pruned
        ds = state.engine
        assert isinstance(ds, engine.DeepSpeedEngine)
        for flat, keep in zip(ds._masters(), ds._keeps, strict=True):
            pruned = keep == 0
            assert int(pruned.sum()) > 0.7 * flat.numel() and bool((flat[pruned] == 0).all())
            moments = [v for v in state.optimizer.state[flat].values() if v.shape == flat.shape]
            assert len(moments) == 2 and all(bool((m[pruned] == 0).all()) for m in moments)
        straight = {n: p.detach().clone() for n, p in state.model.named_parameters()}
        final = task.evaluate(state.model, cfg)
    finally:
        state.engine.close()
    resumed = build_state(cfg, task)
    try:
        assert restore(resumed, tmp_path) and resumed.step == STEPS // 2
        _run(resumed, task, task.batches(cfg, resumed.generator), STEPS)
        for name, param in resumed.model.named_parameters():
            assert torch.equal(param.detach(), straight[name]), name
    finally:
        resumed.engine.close()
    torch_final = train(_cfg(), task, ListReporter())
    assert final["val/acc"] == pytest.approx(torch_final["val/acc"], abs=0.02)


def _ddp_rank(rank: int, port: int, flat: dict, out: dict) -> None:
    torch.set_num_threads(1)
    comm = init_torch(rank, 2, "127.0.0.1", port, timeout_s=120)
    try:
        out[rank] = train(_cfg(**flat), build_task("digits-mlp"), ListReporter(), comm=comm)
    finally:
        shutdown_torch()


@pytest.mark.slow
def test_two_ddp_workers_on_zero2_match_the_torch_engine(deepspeed):
    """DeepSpeed's engine is the gradient mean of a ddp worker group (ZeRO 2 partitions
    optimizer state and gradients over both workers)."""
    finals = {}
    for name, flat in {
        "torch": {},
        "zero2": {"engine": "deepspeed", "deepspeed.zero_stage": 2},
    }.items():
        with mp.Manager() as manager:
            out = manager.dict()
            mp.spawn(_ddp_rank, args=(free_port(), flat, out), nprocs=2, join=True)
            finals[name] = dict(out)
    zero2, dense = finals["zero2"], finals["torch"][0]
    untimed = [{k: v for k, v in zero2[r].items() if not k.startswith("time/")} for r in (0, 1)]
    assert untimed[0] == untimed[1]  # the workers agree
    assert zero2[0]["model/sparsity"] == pytest.approx(0.8, abs=0.005)
    assert zero2[0]["val/acc"] == pytest.approx(dense["val/acc"], abs=0.02)
    # DeepSpeed's gradient mean is metered as DDP's: the same bytes every step
    for key in ("comm/bytes_sent", "comm/bytes_received", "comm/syncs"):
        assert zero2[0][key] == finals["torch"][0][key] > 0, key
