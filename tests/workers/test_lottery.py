import pytest
import torch

from spx.workers.allocation import global_keep
from spx.workers.config import TrialConfig
from spx.workers.loop import advance, build_state
from spx.workers.lottery import Rounds, round_targets
from spx.workers.schedules import lr_at
from spx.workers.tasks import build_task


def test_each_round_prunes_p_of_the_remaining_weights():
    assert round_targets(0.0, 0.2, 5) == pytest.approx([0.2, 0.36, 0.488, 0.5904, 0.67232])
    assert round_targets(0.5, 0.2, 0) == pytest.approx([0.2, 0.36, 0.488, 0.5])
    assert round_targets(0.36, 0.2, 0) == pytest.approx([0.2, 0.36])
    assert len(round_targets(0.95, 0.2, 0)) == 14  # 95.6 % after 14 rounds
    assert round_targets(0.9, 0.2, 1) == [0.9]  # one-shot, then rewind and retrain


def test_rounds_train_from_k_to_t_on_one_step_counter():
    r = Rounds(targets=(0.2, 0.36), length=100, rewind=10)
    assert r.total == 100 + 2 * 90
    assert [t for t in range(400) if r.should_update(t)] == [100, 190]
    assert [r.position(t) for t in (0, 99, 100, 189, 190, 279)] == [0, 99, 10, 99, 10, 99]
    assert [r.sparsity_at(t) for t in (99, 100, 189, 190, 279)] == [0.0, 0.2, 0.2, 0.36, 0.36]


def test_a_round_prunes_by_theta_t_globally_then_rewinds_to_theta_k_with_fresh_state():
    cfg = TrialConfig.from_flat(
        "digits-mlp",
        {
            "train.steps": 20,
            "model.width": 16,
            "prune.method": "lottery",
            "prune.rounds": 1,
            "prune.rate": 0.5,
            "prune.rewind_step": 5,
            "train.lr_schedule": "cosine",
            "prune.min_layer_fraction": 0.0,
        },
    )
    task = build_task("digits-mlp")
    state = build_state(cfg, task)
    batches = task.batches(cfg, state.generator)
    theta_k = None
    while state.step < 20:
        if state.step == 5:
            theta_k = {k: v.clone() for k, v in state.model.state_dict().items()}
        advance(state, task, next(batches))
    theta_t = {n: w.detach().abs().clone() for n, w in state.pruner.weights.items()}
    assert state.optimizer.state  # round 0 built momentum
    assert state.pruner.before_step(20, state.optimizer)
    want = global_keep(theta_t, 0.5)
    assert state.pruner.masks.layer_nnz() == want
    masks = state.pruner.masks.masks
    kept = torch.cat([theta_t[n][m] for n, m in masks.items()])
    dropped = torch.cat([theta_t[n][~m] for n, m in masks.items()])
    assert kept.min() >= dropped.max()  # one threshold on |theta_T| across layers
    for key, value in state.model.state_dict().items():
        mask = state.pruner.masks.masks.get(key)
        expected = theta_k[key] * mask if mask is not None else theta_k[key]
        assert torch.equal(value, expected), key
    assert not state.optimizer.state  # fresh optimizer
    assert state.pruner.position(20) == 5
    advance(state, task, next(batches))
    assert state.optimizer.param_groups[0]["lr"] == lr_at(cfg.train, 5)  # resumed at k
    assert state.pruner.total_steps == 20 + 15
