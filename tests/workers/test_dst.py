import math

import pytest
import torch
from torch import nn

from spx.workers.config import PruneConfig
from spx.workers.dst import SET, Regrowth, RigL


def test_cosine_drop_fraction_on_the_global_step():
    r = Regrowth(alpha=0.3, every=100, end=750)
    assert r.fraction(0) == pytest.approx(0.3)
    assert r.fraction(375) == pytest.approx(0.15)
    assert r.fraction(250) == pytest.approx(0.15 * (1 + math.cos(math.pi / 3)))
    assert [t for t in range(1000) if r.should_update(t)] == [100, 200, 300, 400, 500, 600, 700]


def _layer(cls, weight, mask, grad):
    model = nn.Sequential(nn.Linear(4, 1, bias=False))
    pruner = cls(PruneConfig(method=cls.name, sparsity=0.5), model, steps=100)
    with torch.no_grad():
        model[0].weight.copy_(torch.tensor([weight]))
    model[0].weight.grad = torch.tensor([grad])
    pruner.masks.masks["0.weight"] = torch.tensor([mask])
    opt = torch.optim.AdamW(model.parameters(), lr=0.1)
    opt.state[model[0].weight] = {"exp_avg": torch.ones(1, 4), "exp_avg_sq": torch.ones(1, 4)}
    return model, pruner, opt


def test_rigl_drops_the_smallest_weight_and_grows_the_largest_dense_gradient():
    model, pruner, opt = _layer(
        RigL, [0.5, -0.1, 0.0, 0.0], [True, True, False, False], [0.3, 0.2, 0.9, 0.1]
    )
    pruner.regrow(0.5, opt)  # floor(0.5 * 2) = 1 weight moves
    assert pruner.masks.masks["0.weight"].tolist() == [[True, False, True, False]]
    assert model[0].weight.tolist() == [[0.5, 0.0, 0.0, 0.0]]  # grown weights start at 0
    assert opt.state[model[0].weight]["exp_avg"].tolist() == [[1.0, 0.0, 0.0, 0.0]]


def test_rigl_keeps_a_dropped_weight_grown_straight_back():
    # the dropped weight's gradient beats every inactive one: it comes back with its value
    model, pruner, opt = _layer(
        RigL, [0.5, -0.1, 0.0, 0.0], [True, True, False, False], [0.3, 0.9, 0.2, 0.1]
    )
    pruner.regrow(0.5, opt)
    assert pruner.masks.masks["0.weight"].tolist() == [[True, True, False, False]]
    assert model[0].weight.tolist() == [[0.5, pytest.approx(-0.1), 0.0, 0.0]]
    assert opt.state[model[0].weight]["exp_avg"].tolist() == [[1.0, 1.0, 0.0, 0.0]]


def test_set_grows_at_random_keeping_the_count():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(32, 32, bias=False))
    pruner = SET(PruneConfig(method="set", sparsity=0.75), model, steps=100)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    pruner.before_step(0, opt)
    before = pruner.masks.masks["0.weight"].clone()
    pruner.regrow(0.3, opt)
    after = pruner.masks.masks["0.weight"]
    assert int(after.sum()) == int(before.sum()) == 256
    assert int((after & ~before).sum()) > 0  # some weights moved
    assert bool((model[0].weight[~after] == 0).all())
