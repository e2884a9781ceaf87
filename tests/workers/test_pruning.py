import copy

import pytest
import torch
from torch import nn

from spx.workers.config import PruneConfig, ScheduleConfig, TrialConfig
from spx.workers.loop import advance, build_state
from spx.workers.masks import MaskSet, keep_top, prunable_weights
from spx.workers.methods import METHODS, Channel, GlobalMagnitude, Magnitude, register
from spx.workers.pruner import Pruner
from spx.workers.tasks import build_task

W4 = [
    [0.1, -0.9, 0.3, 0.0],
    [2.0, -0.05, 0.4, -0.6],
    [0.2, 0.7, -1.5, 0.01],
    [0.8, 0.0, 0.02, -0.3],
]


def test_keep_top_on_a_literal_4x4():
    mask = keep_top(torch.tensor(W4).abs(), keep=6)
    assert mask.int().tolist() == [[0, 1, 0, 0], [1, 0, 0, 1], [0, 1, 1, 0], [1, 0, 0, 0]]


def test_keep_top_keeps_exactly_k_also_when_dropping_the_lowest_is_cheaper():
    mask = keep_top(torch.tensor(W4).abs(), keep=13)  # drops the 3 smallest instead
    assert mask.int().tolist() == [[1, 1, 1, 0], [1, 1, 1, 1], [1, 1, 1, 0], [1, 0, 1, 1]]
    assert int(keep_top(torch.tensor(W4), keep=16).sum()) == 16


def test_prunable_weights_skip_biases_norms_and_tied_embeddings():
    from spx.workers.gpt import GPT

    names = set(prunable_weights(GPT(256, 8, 16, 1, 2)))
    assert names == {
        "blocks.0.qkv.weight",
        "blocks.0.proj.weight",
        "blocks.0.fc.weight",
        "blocks.0.out.weight",
    }
    assert "tokens.weight" in prunable_weights(GPT(256, 8, 16, 1, 2), embeddings=True)


def _one_shot(method: type[Pruner], model: nn.Module, sparsity: float, **knobs) -> Pruner:
    cfg = PruneConfig(
        method=method.name,
        sparsity=sparsity,
        schedule=ScheduleConfig(kind="one-shot", start=0.0, end=0.0),
        **knobs,
    )
    return method(cfg, model, steps=10)


def _linear(*rows: list[float]) -> nn.Linear:
    weight = torch.tensor(rows)
    layer = nn.Linear(weight.shape[1], weight.shape[0], bias=False)
    with torch.no_grad():
        layer.weight.copy_(weight)
    return layer


def test_magnitude_on_a_literal_4x4():
    model = nn.Sequential(_linear(*W4))
    pruner = _one_shot(Magnitude, model, 0.625)
    assert pruner.before_step(0, torch.optim.SGD(model.parameters(), lr=0.1))
    assert pruner.masks.masks["0.weight"].int().tolist() == [
        [0, 1, 0, 0],
        [1, 0, 0, 1],
        [0, 1, 1, 0],
        [1, 0, 0, 0],
    ]
    assert model[0].weight[0].tolist() == pytest.approx([0.0, -0.9, 0.0, 0.0])


def test_magnitude_reaches_the_target_exactly_per_layer():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(10, 7), nn.ReLU(), nn.Linear(7, 3))
    pruner = _one_shot(Magnitude, model, 0.6)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    assert pruner.before_step(0, opt)
    assert pruner.masks.layer_nnz() == {"0.weight": 70 - 42, "2.weight": 21 - 13}
    kept = model[0].weight[pruner.masks.masks["0.weight"]].abs().min()
    dropped = model[0].weight.detach().abs()[~pruner.masks.masks["0.weight"]]
    assert bool((dropped == 0).all())
    assert kept > 0


def test_pruned_weights_never_revive_under_adamw_with_weight_decay():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 8))
    pruner = _one_shot(Magnitude, model, 0.5)
    opt = torch.optim.AdamW(model.parameters(), lr=0.1, weight_decay=0.1)
    x = torch.randn(16, 8)
    for step in range(5):
        pruner.before_step(step, opt)
        opt.zero_grad()
        model(x).pow(2).sum().backward()
        pruner.after_backward(step, opt)
        opt.step()
        pruner.after_step()
    mask = pruner.masks.masks["0.weight"]
    assert bool((model[0].weight[~mask] == 0).all())
    assert bool((opt.state[model[0].weight]["exp_avg"][~mask] == 0).all())
    assert MaskSet(prunable_weights(model)).numel() == 64


# global-magnitude (Gupta et al., arXiv 2209.14624): one threshold would empty layer 1; the
# MT rule keeps N_min there.
A = [[0.9, 0.8, 0.7, 0.6], [0.5, 0.4, 0.3, 0.2]]
B = [[0.1, 0.05], [0.02, 0.01]]


def test_global_magnitude_without_mt_collapses_the_small_layer():
    model = nn.Sequential(_linear(*A), _linear(*B))
    pruner = _one_shot(GlobalMagnitude, model, 0.5, min_layer_fraction=0.0)
    pruner.before_step(0, torch.optim.SGD(model.parameters(), lr=0.1))
    assert pruner.masks.masks["0.weight"].int().tolist() == [[1, 1, 1, 1], [1, 1, 0, 0]]
    assert pruner.masks.masks["1.weight"].int().tolist() == [[0, 0], [0, 0]]
    assert pruner.masks.collapsed() == 1


def test_global_magnitude_mt_clamp_on_a_literal_example():
    model = nn.Sequential(_linear(*A), _linear(*B))
    # N_min = floor(12 * 0.1) = 1: layer 1 keeps its largest weight, layer 0 pays for it
    pruner = _one_shot(GlobalMagnitude, model, 0.5, min_layer_fraction=0.1)
    pruner.before_step(0, torch.optim.SGD(model.parameters(), lr=0.1))
    assert pruner.masks.masks["0.weight"].int().tolist() == [[1, 1, 1, 1], [1, 0, 0, 0]]
    assert pruner.masks.masks["1.weight"].int().tolist() == [[1, 0], [0, 0]]
    assert pruner.masks.nnz() == 6 and pruner.masks.collapsed() == 0


def test_channel_prunes_whole_rows_by_l2_norm_and_never_the_output_layer():
    hidden = _linear([3.0, 0, 0, 0], [0.1, 0.1, 0.1, 0.1], [1.0, 1.0, 1.0, 1.0], [0.5, 0, 0, 0])
    model = nn.Sequential(hidden, nn.ReLU(), nn.Linear(4, 2))
    pruner = _one_shot(Channel, model, 0.5)
    pruner.before_step(0, torch.optim.SGD(model.parameters(), lr=0.1))
    # the output layer (8 weights) stays whole, so 0.5 of all 24 prunable weights is 0.75 of
    # the hidden layer's 16: of row norms 3.0, 0.2, 2.0, 0.5 only row 0 stays, whole
    assert pruner.masks.masks["0.weight"].int().tolist() == [
        [1, 1, 1, 1],
        [0, 0, 0, 0],
        [0, 0, 0, 0],
        [0, 0, 0, 0],
    ]
    assert bool(pruner.masks.masks["2.weight"].all())
    assert pruner.masks.sparsity() == 0.5  # what was asked, over every prunable weight


def test_every_shipped_method_is_registered_by_name():
    assert set(METHODS) >= {
        "channel",
        "global-magnitude",
        "lottery",
        "magnitude",
        "nm",
        "nodes",
        "none",
        "oto",
        "random",
        "rigl",
        "set",
        "snip",
    }


def test_the_scoring_hook_sees_this_steps_gradient_from_step_0():
    seen = []

    class GradMagnitude(Magnitude):
        """|w·g| on prune.schedule (registered for this test only)."""

        name = "test-grad-magnitude"
        needs_gradients = True
        zero_stages = (0,)

        def scores(self, weight, grad):
            seen.append(grad.clone())  # None (no gradient yet) would fail right here
            return (weight.detach() * grad).abs()

    register(GradMagnitude)
    try:
        flat = {"train.steps": 4, "model.width": 16, "prune.method": GradMagnitude.name}
        flat.update({"prune.sparsity": 0.5, "prune.schedule.kind": "one-shot"})
        cfg = TrialConfig.from_flat("digits-mlp", flat)
        task = build_task("digits-mlp")
        state = build_state(cfg, task)
        batch = next(task.batches(cfg, state.generator))
        reference = copy.deepcopy(state.model)
        task.loss(reference, batch).backward()
        assert advance(state, task, batch)[1]  # pruned at step 0, on step 0's gradient
    finally:
        del METHODS[GradMagnitude.name]
    grads = {n: p.grad for n, p in reference.named_parameters()}
    assert len(seen) == len(state.pruner.weights)
    for got, name in zip(seen, state.pruner.weights, strict=True):
        assert torch.equal(got, grads[name]), name


def test_channel_refuses_a_sparsity_it_cannot_reach_with_the_output_layer_whole():
    from spx.errors import ConfigError
    from spx.workers.config import TrialConfig
    from spx.workers.tasks import build_task

    flat = {"prune.method": "channel", "model.width": 16, "model.depth": 2}
    task = build_task("digits-mlp")
    task.validate(TrialConfig.from_flat("digits-mlp", {**flat, "prune.sparsity": 0.85}))
    with pytest.raises(ConfigError) as err:  # 160 of 1440 weights are the output layer's
        task.validate(TrialConfig.from_flat("digits-mlp", {**flat, "prune.sparsity": 0.9}))
    assert err.value.field == "prune.sparsity" and "below 0.8889" in str(err.value)
