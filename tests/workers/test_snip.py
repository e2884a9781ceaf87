"""SNIP (Lee et al. 2019): one-shot, global, by |w · g| on one batch's gradient."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from spx.errors import ConfigError
from spx.workers.config import PruneConfig, TrialConfig
from spx.workers.loop import advance, build_state
from spx.workers.masks import keep_top
from spx.workers.snip import SNIP
from spx.workers.tasks import build_task


def _tiny() -> nn.Sequential:
    model = nn.Sequential(nn.Linear(2, 2, bias=False), nn.Linear(2, 1, bias=False))
    with torch.no_grad():
        model[0].weight.copy_(torch.tensor([[1.0, -1.0], [0.5, 2.0]]))
        model[1].weight.copy_(torch.tensor([[2.0, 0.1]]))
    return model


def test_snip_at_step_0_keeps_the_largest_w_times_g_across_layers():
    # L = W2 W1 x with x = (1, 2): h = W1 x = (-1, 4.5), dL/dW2 = h, dL/dW1[i, j] = W2[i] x[j]
    #   |w·g| of W1: [[|1·2|, |-1·4|], [|0.5·0.1|, |2·0.2|]] = [[2, 4], [0.05, 0.4]]
    #   |w·g| of W2: [[|2·-1|, |0.1·4.5|]] = [[2, 0.45]]
    # Half of the 6 weights stay: 4, 2, 2. (|w| alone would keep W1[1, 1] = 2 instead.)
    model = _tiny()
    cfg = PruneConfig(method="snip", sparsity=0.5, min_layer_fraction=0.0)
    pruner = SNIP(cfg, model, steps=10)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    assert not pruner.before_step(0, opt)  # nothing before the first forward pass
    assert pruner.masks.nnz() == 6
    model(torch.tensor([[1.0, 2.0]])).sum().backward()
    assert pruner.after_backward(0, opt)
    assert pruner.masks.masks["0.weight"].int().tolist() == [[1, 1], [0, 0]]
    assert pruner.masks.masks["1.weight"].int().tolist() == [[1, 0]]
    assert model[0].weight.grad.tolist() == [[2.0, 4.0], [0.0, 0.0]]  # pruned: no gradient
    opt.step()
    pruner.after_step()
    assert model[1].weight[0, 1] == 0 and not pruner.after_backward(1, opt)  # fixed after


def _cfg(**flat) -> TrialConfig:
    base = {"train.steps": 8, "model.width": 16, "prune.method": "snip", "prune.sparsity": 0.9}
    return TrialConfig.from_flat("digits-mlp", {**base, "prune.min_layer_fraction": 0.0, **flat})


@pytest.mark.parametrize("at", [0, 3])
def test_through_the_loop_snip_scores_the_gradient_of_the_chosen_steps_batch(at):
    cfg = _cfg(**{"prune.snip_step": at})
    task = build_task("digits-mlp")
    state = build_state(cfg, task)
    batches = task.batches(cfg, state.generator)
    for _ in range(at):
        assert not advance(state, task, next(batches))[1]
    assert state.pruner.masks.nnz() == state.pruner.masks.numel()  # dense until then
    batch = next(batches)
    reference = copy.deepcopy(state.model)
    task.loss(reference, batch).backward()
    names = list(state.pruner.weights)
    params = dict(reference.named_parameters())
    saliency = torch.cat([(params[n] * params[n].grad).abs().flatten() for n in names])
    total = saliency.numel()
    want = keep_top(saliency, total - round(0.9 * total))
    assert advance(state, task, batch)[1]  # the mask update is reported at this step
    got = torch.cat([state.pruner.masks.masks[n].flatten() for n in names])
    assert torch.equal(got, want)
    before = {n: m.clone() for n, m in state.pruner.masks.masks.items()}
    for _ in range(2):
        advance(state, task, next(batches))
    assert all(torch.equal(before[n], m) for n, m in state.pruner.masks.masks.items())


def test_snip_step_must_come_before_the_end_of_training():
    with pytest.raises(ConfigError) as err:
        _cfg(**{"prune.snip_step": 8})
    assert err.value.field == "prune.snip_step" and "train.steps = 8" in str(err.value)
    assert _cfg(**{"prune.method": "magnitude", "prune.snip_step": 8}).prune.snip_step == 8
