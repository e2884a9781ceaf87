"""The conformance suite every registered sparsity method passes, read from the registry.

A new method needs no edit here: each method class carries an ``example`` (the keys of a
small trial it runs), and the suite trains every registered method with it, on a tiny MLP
through the real loop (``advance``), under AdamW with weight decay and under SGD with
momentum and weight decay. After every step:

- masks are boolean and shaped like their weights;
- masked weights are exactly zero, and (but for SR-STE's dense optimizer) so is their
  optimizer state;
- nothing masked revives: masks only shrink, unless the method regrows by design (then its
  own invariant holds: constant per-layer counts for rigl/set, N of every M for nm);
- every call of the scoring hook after a backward pass sees that step's dense gradient;

and at the end the target is reached within one weight (or one channel) per layer, a
save/restore round-trip gives back the same masks, weights, optimizer and pruner state,
and each capability flag keeps its promise (masks drawn before the first forward pass,
the schedule followed, the model compacted with equal outputs, the ZeRO stages allowed).
"""

from __future__ import annotations

import pytest
import torch

from spx.errors import ConfigError
from spx.workers import config, zig
from spx.workers.config import TrialConfig
from spx.workers.loop import (
    COMPACT_METRICS,
    _compaction,
    advance,
    build_state,
    reported_metrics,
    restore,
    save,
)
from spx.workers.methods import METHODS
from spx.workers.schedules import build_schedule
from spx.workers.tasks import build_task

BASE = {
    "train.steps": 24,
    "model.width": 16,
    "model.depth": 2,
    "train.weight_decay": 0.1,
    "prune.schedule.start": 0.0,
    "prune.schedule.end": 0.5,
    "prune.schedule.every": 4,
}
NAMES = sorted(METHODS)


def _run(method: str, optimizer: str):
    flat = {**BASE, **METHODS[method].example, "prune.method": method}
    cfg = TrialConfig.from_flat("digits-mlp", {**flat, "train.optimizer": optimizer})
    task = build_task("digits-mlp")
    state = build_state(cfg, task)
    batches = task.batches(cfg, state.generator)
    return cfg, task, state, batches


@pytest.mark.parametrize("optimizer", ["adamw", "sgd"])
@pytest.mark.parametrize("method", NAMES)
def test_masks_stay_exact_and_nothing_masked_revives(method, optimizer):
    cfg, task, state, batches = _run(method, optimizer)
    pruner = state.pruner
    seen = _record_scores(pruner)
    previous = None
    while state.step < pruner.total_steps:
        advance(state, task, next(batches))
        masks = pruner.masks.masks
        for name, weight in pruner.weights.items():
            mask = masks[name]
            assert mask.dtype == torch.bool and mask.shape == weight.shape, name
            assert bool((weight[~mask] == 0).all()), f"{name} has live pruned weights"
            if method != "nm":  # SR-STE steps the dense weights, so keeps dense state
                for slot in state.optimizer.state.get(weight, {}).values():
                    if torch.is_tensor(slot) and slot.shape == weight.shape:
                        assert bool((slot[~mask] == 0).all()), f"{name} pruned state"
            if previous is not None and not pruner.regrows:
                assert not bool((mask & ~previous[name]).any()), f"{name} revived"
        previous = {n: m.clone() for n, m in masks.items()}
        _regrowth_invariants(method, pruner)
    TARGETS.get(method, _final_sparsity)(pruner)
    for step, fresh in seen:  # scored after a backward pass: on that step's gradient
        assert fresh, f"step {step} scored another gradient"
    if pruner.needs_gradients and not pruner.masks_at_step0:
        assert seen, "a method that needs gradients never scored one"
    _compacts_as_it_says(cfg, task, state)


def _record_scores(pruner) -> list:
    """(step, whether ``scores`` got this step's dense gradient) for every scoring call
    inside ``after_backward``."""
    seen: list = []
    current: dict[int, torch.Tensor] = {}  # weight -> its gradient, inside after_backward
    step = [0]
    scores, after_backward = pruner.scores, pruner.after_backward

    def recording_scores(weight, grad):
        if id(weight) in current:  # compared now: the loop masks the gradient in place next
            want = current[id(weight)]
            seen.append((step[0], grad is not None and torch.equal(grad, want)))
        return scores(weight, grad)

    def recording_after_backward(at, optimizer):
        step[0] = at
        grads = {id(w): w.grad.clone() for w in pruner.weights.values() if w.grad is not None}
        current.update(grads)
        try:
            return after_backward(at, optimizer)
        finally:
            current.clear()

    pruner.scores, pruner.after_backward = recording_scores, recording_after_backward
    return seen


def _compacts_as_it_says(cfg, task, state) -> None:
    compacts = set(COMPACT_METRICS) <= reported_metrics(cfg, task)
    assert compacts == state.pruner.compacts
    if compacts:
        counts = _compaction(state, task, cfg)
        assert counts["compact/max_abs_diff"] < 1e-4
        assert counts["compact/params_ratio"] < 1


def _regrowth_invariants(method, pruner):
    if method in ("rigl", "set"):
        assert pruner.masks.layer_nnz() == _uniform(pruner, pruner.cfg.sparsity)
    if method == "nm":
        for mask in pruner.masks.masks.values():
            assert bool((mask.reshape(-1, 4).sum(1) == 2).all())


def _sizes(pruner):
    return {n: m.numel() for n, m in pruner.masks.masks.items()}


def _uniform(pruner, sparsity):
    return {n: size - round(sparsity * size) for n, size in _sizes(pruner).items()}


def _final_sparsity(pruner):
    """Any method: its schedule's final sparsity over the layers it prunes, within one
    weight per layer, and the layers it leaves dense all dense."""
    sizes = {n: s for n, s in _sizes(pruner).items() if n not in pruner.exempt}
    total, final = sum(sizes.values()), pruner.schedule.final
    nnz = sum(int(pruner.masks.masks[n].sum()) for n in sizes)
    assert abs(nnz - (total - round(final * total))) <= len(sizes)
    assert all(bool(pruner.masks.masks[n].all()) for n in pruner.exempt)


def _channels(pruner):
    for name, mask in pruner.masks.masks.items():
        rows = mask.flatten(1).sum(1)
        assert bool(((rows == 0) | (rows == mask[0].numel())).all()), "partial channel"
        per_layer = pruner.layer_target(pruner.cfg.sparsity)  # the output layer stays whole
        kept = mask.shape[0] - round(per_layer * mask.shape[0])
        want = mask.shape[0] if name in pruner.exempt else kept
        assert int((rows > 0).sum()) == want, name
    # ... so the other layers prune more and all prunable weights reach the target
    per_channel = max(m[0].numel() for m in pruner.masks.masks.values())
    slack = len(pruner.masks.masks) * per_channel / pruner.masks.numel()
    assert abs(pruner.masks.sparsity() - pruner.cfg.sparsity) <= slack


TARGETS = {  # stricter than _final_sparsity where a method promises more
    "magnitude": lambda p: _check_equal(p.masks.layer_nnz(), _uniform(p, p.cfg.sparsity)),
    "channel": _channels,
    "nm": lambda p: _check_equal(p.masks.sparsity(), 0.5),
    "rigl": lambda p: _check_equal(p.masks.layer_nnz(), _uniform(p, p.cfg.sparsity)),
    "set": lambda p: _check_equal(p.masks.layer_nnz(), _uniform(p, p.cfg.sparsity)),
    "oto": lambda p: _check_equal(p.zeros(), p.target),
    "nodes": lambda p: _check_equal(
        [int(k.sum()) for k in p.keep], [zig.kept_count(g.size, p.cfg.sparsity) for g in p.space]
    ),
}


def _check_equal(got, want):
    assert got == want


@pytest.mark.parametrize("method", NAMES)
def test_save_and_restore_round_trip(method, tmp_path):
    cfg, task, state, batches = _run(method, "adamw")
    for _ in range(14):  # past the first pruning events and the lottery's rewind step
        advance(state, task, next(batches))
    save(state, tmp_path / "ckpt")
    fresh = build_state(cfg, task)
    assert restore(fresh, tmp_path / "ckpt")
    assert fresh.step == state.step
    _same(fresh.pruner.state_dict()[0], state.pruner.state_dict()[0])
    _same(dict(fresh.model.state_dict()), dict(state.model.state_dict()))
    for p, q in zip(fresh.model.parameters(), state.model.parameters(), strict=True):
        _same(fresh.optimizer.state.get(p, {}), state.optimizer.state.get(q, {}))


def _same(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key in a:
        if torch.is_tensor(a[key]):
            assert torch.equal(a[key], b[key]), key
        else:
            assert a[key] == b[key], key


@pytest.mark.parametrize("method", NAMES)
def test_masks_before_the_first_forward_pass_are_what_the_flags_say(method):
    # BASE's schedule starts at step 0, so a method that needs no gradient may prune then
    _, _, state, _ = _run(method, "adamw")
    pruner = state.pruner
    drawn = pruner.before_step(0, state.optimizer)  # True: a mask update (maybe to 0 %)
    sparse = pruner.masks.nnz() < pruner.masks.numel()
    assert drawn or not sparse, "masks changed, but before_step did not say so"
    if pruner.masks_at_step0:
        assert sparse, "a masks_at_step0 method has its masks before the first forward pass"
    elif pruner.needs_gradients:
        assert not drawn, "a method that needs gradients waits for the first backward pass"


@pytest.mark.parametrize("method", NAMES)
def test_a_method_follows_prune_schedule_exactly_when_flagged(method):
    cfg, _, state, _ = _run(method, "adamw")
    p = cfg.prune
    follows = state.pruner.schedule == build_schedule(p.schedule, p.sparsity, cfg.train.steps)
    assert follows == state.pruner.follows_schedule


@pytest.mark.parametrize("stage", [1, 2])
@pytest.mark.parametrize("method", NAMES)
def test_zero_stages_are_the_ones_the_config_allows(method, stage, monkeypatch):
    monkeypatch.setattr(config, "deepspeed_installed", lambda: True)
    flat = {**BASE, **METHODS[method].example, "prune.method": method, "engine": "deepspeed"}
    flat["deepspeed.zero_stage"] = stage
    if stage in METHODS[method].zero_stages:
        assert TrialConfig.from_flat("digits-mlp", flat).deepspeed.zero_stage == stage
    else:
        with pytest.raises(ConfigError) as err:
            TrialConfig.from_flat("digits-mlp", flat)
        assert err.value.field == "deepspeed.zero_stage"
