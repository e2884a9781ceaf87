"""The conformance suite every registered sparsity method passes.

A new method adds its knobs and its target check to CASES; the suite fails until it does.
Each method trains a tiny MLP through the real loop (``advance``) under AdamW with weight
decay and under SGD with momentum and weight decay, and after every step:

- masks are boolean and shaped like their weights;
- masked weights are exactly zero, and (but for SR-STE's dense optimizer) so is their
  optimizer state;
- nothing masked revives: masks only shrink, unless the method regrows by design (then its
  own invariant holds: constant per-layer counts for rigl/set, N of every M for nm);

and at the end the target is reached within one weight (or one channel) per layer and a
save/restore round-trip gives back the same masks, weights, optimizer and pruner state.
"""

from __future__ import annotations

import pytest
import torch

from spx.workers.config import TrialConfig
from spx.workers.loop import advance, build_state, restore, save
from spx.workers.methods import METHODS
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
SPARSE = {"prune.sparsity": 0.75}
CASES = {
    "none": {},
    "magnitude": SPARSE,
    "global-magnitude": SPARSE,
    "random": {**SPARSE, "prune.distribution": "erk"},
    "channel": {"prune.sparsity": 0.5},
    "lottery": {**SPARSE, "prune.rate": 0.5, "prune.rewind_step": 4},
    "nm": {"prune.nm": "2:4"},
    "rigl": {**SPARSE, "prune.update_every": 4},
    "set": {**SPARSE, "prune.update_every": 4},
    "oto": {"prune.sparsity": 0.5},
    "nodes": {"prune.sparsity": 0.5},
}


def test_every_registered_method_has_a_conformance_case():
    assert set(CASES) == set(METHODS)


def _run(method: str, optimizer: str):
    cfg = TrialConfig.from_flat(
        "digits-mlp",
        {**BASE, **CASES[method], "prune.method": method, "train.optimizer": optimizer},
    )
    task = build_task("digits-mlp")
    state = build_state(cfg, task)
    batches = task.batches(cfg, state.generator)
    return cfg, task, state, batches


@pytest.mark.parametrize("optimizer", ["adamw", "sgd"])
@pytest.mark.parametrize("method", sorted(CASES))
def test_masks_stay_exact_and_nothing_masked_revives(method, optimizer):
    _, task, state, batches = _run(method, optimizer)
    pruner = state.pruner
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
    TARGETS[method](pruner)


def _regrowth_invariants(method, pruner):
    if method in ("rigl", "set"):
        assert pruner.masks.layer_nnz() == _uniform(pruner, 0.75)
    if method == "nm":
        for mask in pruner.masks.masks.values():
            assert bool((mask.reshape(-1, 4).sum(1) == 2).all())


def _sizes(pruner):
    return {n: m.numel() for n, m in pruner.masks.masks.items()}


def _uniform(pruner, sparsity):
    return {n: size - round(sparsity * size) for n, size in _sizes(pruner).items()}


def _global_exact(sparsity):
    def check(pruner):
        total = pruner.masks.numel()
        assert abs(pruner.masks.nnz() - (total - round(sparsity * total))) <= len(_sizes(pruner))

    return check


def _channels(pruner):
    for name, mask in pruner.masks.masks.items():
        rows = mask.flatten(1).sum(1)
        assert bool(((rows == 0) | (rows == mask[0].numel())).all()), "partial channel"
        want = mask.shape[0] if name in pruner.exempt else round(0.5 * mask.shape[0])
        assert int((rows > 0).sum()) == want, name


TARGETS = {
    "none": lambda p: _check_equal(p.masks.sparsity(), 0.0),
    "magnitude": lambda p: _check_equal(p.masks.layer_nnz(), _uniform(p, 0.75)),
    "global-magnitude": _global_exact(0.75),
    "random": _global_exact(0.75),
    "channel": _channels,
    "lottery": _global_exact(0.75),
    "nm": lambda p: _check_equal(p.masks.sparsity(), 0.5),
    "rigl": lambda p: _check_equal(p.masks.layer_nnz(), _uniform(p, 0.75)),
    "set": lambda p: _check_equal(p.masks.layer_nnz(), _uniform(p, 0.75)),
    "oto": lambda p: _check_equal(p.zeros(), p.target),
    "nodes": lambda p: _check_equal([int(k.sum()) for k in p.keep], [8, 8]),
}


def _check_equal(got, want):
    assert got == want


@pytest.mark.parametrize("method", sorted(CASES))
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
