import pytest
import torch
from torch import nn

from spx.kernels.nm import nm_mask
from spx.workers.config import PruneConfig
from spx.workers.srste import NM


def test_2_4_groups_run_along_the_input_dimension_of_a_linear_weight():
    w = torch.tensor(
        [[1.0, -4.0, 3.0, 2.0], [0.5, 0.1, -0.2, 0.9], [0.0, 0.3, 0.2, 0.1], [7.0, 6.0, -5.0, 8.0]]
    )
    assert nm_mask(w, 2, 4).int().tolist() == [
        [0, 1, 1, 0],
        [1, 0, 0, 1],
        [0, 1, 1, 0],
        [1, 0, 0, 1],
    ]


def test_conv_groups_run_along_input_channels():
    # [out=1, in=4, kh=1, kw=2]: groups are the 4 input channels at each kernel position
    w = torch.tensor([[[[1.0, 9.0]], [[2.0, 8.0]], [[3.0, 1.0]], [[4.0, 2.0]]]])
    mask = nm_mask(w, 2, 4)
    assert mask[0, :, 0, 0].int().tolist() == [0, 0, 1, 1]
    assert mask[0, :, 0, 1].int().tolist() == [1, 1, 0, 0]


def test_srste_steps_the_dense_weights_with_decay_on_the_pruned_ones():
    model = nn.Sequential(nn.Linear(4, 1, bias=False))
    with torch.no_grad():
        model[0].weight.copy_(torch.tensor([[1.0, -4.0, 3.0, 2.0]]))
    pruner = NM(PruneConfig(method="nm", nm="2:4", srste_decay=0.5), model, steps=10)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    assert pruner.before_step(0, opt)
    assert model[0].weight.tolist() == [[0.0, -4.0, 3.0, 0.0]]  # the forward sees W ⊙ M
    model(torch.ones(1, 4)).sum().backward()  # dL/dW~ = 1 everywhere
    pruner.after_backward(0, opt)
    opt.step()
    pruner.after_step()
    # W - 0.1 (1 + 0.5 (1 - M) W): pruned 1.0 -> 0.85, 2.0 -> 1.8; kept ones move by 0.1
    assert pruner.dense["0.weight"].tolist() == [
        [pytest.approx(0.85), pytest.approx(-4.1), pytest.approx(2.9), pytest.approx(1.8)]
    ]
    assert model[0].weight.tolist() == [[0.0, pytest.approx(-4.1), pytest.approx(2.9), 0.0]]
    assert pruner.masks.sparsity() == 0.5
