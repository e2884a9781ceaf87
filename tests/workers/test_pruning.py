import pytest
import torch
from torch import nn

from spx.workers.config import PruneConfig, ScheduleConfig
from spx.workers.masks import MaskSet, keep_top, prunable_weights
from spx.workers.methods import METHODS, Channel, GlobalMagnitude, Magnitude
from spx.workers.pruner import Pruner

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


# global-magnitude (§10): one threshold would empty layer 1; the MT rule keeps N_min there.
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
    # row norms 3.0, 0.2, 2.0, 0.5: rows 0 and 2 stay, whole
    assert pruner.masks.masks["0.weight"].int().tolist() == [
        [1, 1, 1, 1],
        [0, 0, 0, 0],
        [1, 1, 1, 1],
        [0, 0, 0, 0],
    ]
    assert bool(pruner.masks.masks["2.weight"].all())


def test_every_method_is_registered_by_name():
    assert sorted(METHODS) == [
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
    ]
