"""Post-training pruning math on small layers: Wanda, SparseGPT, DSnoT, and the
block-by-block calibration that feeds them."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from spx.workers.calibration import InputStats, collect, feeder, linear_layers, prune_in_order
from spx.workers.dsnot import dsnot_refine
from spx.workers.gpt import GPT
from spx.workers.posttrain import magnitude_mask, wanda_mask
from spx.workers.sparsegpt import sparsegpt_prune


def stats_of(x: torch.Tensor, hessian: bool = False) -> InputStats:
    s = InputStats(x.shape[-1], hessian=hessian)
    s.add(x)
    return s


def correlated_inputs(tokens: int, features: int, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    mix = torch.randn(features, features, generator=gen) / features**0.5
    # features of very different size, as in LLMs, in no particular order
    scale = torch.logspace(-1, 1, features)[torch.randperm(features, generator=gen)]
    return (torch.randn(tokens, features, generator=gen) @ mix + 0.3) * scale


def test_wanda_keeps_the_largest_weight_times_input_norm_within_each_row():
    W = torch.tensor([[4.0, 1.0, 2.0, 3.0], [1.0, 1.0, 1.0, 1.0]])
    x = torch.tensor([[0.1, 3.0, 1.0, 0.0], [0.0, 4.0, 1.0, 1.0]])  # norms 0.1, 5, √2, 1
    keep = wanda_mask(W, stats_of(x).sq_norm, 0.5)
    # row 0 scores: 0.4, 5, 2.83, 3  -> keep inputs 1 and 3; row 1: 0.1, 5, 1.41, 1 -> 1, 2
    assert keep.int().tolist() == [[0, 1, 0, 1], [0, 1, 1, 0]]
    assert wanda_mask(W, stats_of(x).sq_norm, 0.0, nm=(2, 4)).int().tolist() == keep.int().tolist()


def test_magnitude_compares_over_the_whole_layer():
    W = torch.tensor([[4.0, 1.0, 2.0, 3.0], [0.5, 0.6, 0.7, 0.8]])
    assert magnitude_mask(W, 0.5).int().tolist() == [[1, 1, 1, 1], [0, 0, 0, 0]]


def test_sparsegpt_with_one_weight_pruned_in_column_zero_is_exactly_obs():
    torch.manual_seed(0)
    x = correlated_inputs(64, 4).double()
    H = stats_of(x, hessian=True).H
    w = torch.tensor([[0.01, 1.0, -2.0, 1.5]], dtype=torch.float64)  # column 0 is cheapest
    pruned = w.clone().float()
    keep = sparsegpt_prune(pruned, H, sparsity=0.25, block=4, damp=0.01)
    assert keep.int().tolist() == [[0, 1, 1, 1]]
    damped = H + 0.01 * torch.diag(H).mean() * torch.eye(4, dtype=H.dtype)
    Hinv = torch.linalg.inv(damped)
    expected = w - (w[0, 0] / Hinv[0, 0]) * Hinv[:, 0].unsqueeze(0)
    assert pruned.double() == pytest.approx(expected, abs=1e-5)
    assert pruned[0, 0] == 0


def test_sparsegpt_in_a_later_column_is_obs_over_the_columns_to_its_right():
    x = correlated_inputs(64, 5, seed=1).double()
    H = stats_of(x, hessian=True).H
    w = torch.tensor([[2.0, -1.5, 0.01, 1.0, 3.0]], dtype=torch.float64)
    pruned = w.clone().float()
    keep = sparsegpt_prune(pruned, H, sparsity=0.2, block=5, damp=0.01)
    assert keep.int().tolist() == [[1, 1, 0, 1, 1]]
    damped = H + 0.01 * torch.diag(H).mean() * torch.eye(5, dtype=H.dtype)
    right = torch.linalg.inv(damped[2:, 2:])  # columns 0 and 1 are already fixed
    expected = w.clone()
    expected[0, 2:] -= (w[0, 2] / right[0, 0]) * right[:, 0]
    assert pruned.double() == pytest.approx(expected, abs=1e-5)


@pytest.mark.parametrize("nm", [None, (2, 4)])
def test_sparsegpt_reconstructs_better_than_wanda_and_magnitude(nm):
    x = correlated_inputs(1024, 256, seed=2)
    W = torch.randn(32, 256, generator=torch.Generator().manual_seed(3))
    stats = stats_of(x, hessian=True)
    dense = x @ W.T

    def error(weight):
        return float(((x @ weight.T - dense) ** 2).sum())

    by_magnitude = W * magnitude_mask(W, 0.5, nm)
    by_wanda = W * wanda_mask(W, stats.sq_norm, 0.5, nm)
    by_sparsegpt = W.clone()
    keep = sparsegpt_prune(by_sparsegpt, stats.H, 0.5, nm, block=64)
    assert float(keep.float().mean()) == pytest.approx(0.5)
    assert bool((by_sparsegpt[~keep] == 0).all())
    if nm:
        assert bool((keep.view(32, -1, 4).sum(-1) == 2).all())
    else:
        assert bool((keep.sum(1) == 128).all())  # every row exactly half
    assert error(by_sparsegpt) < error(by_wanda) < error(by_magnitude)


def test_sparsegpt_row_masks_reach_the_exact_sparsity_when_blocks_do_not_divide_it():
    x = correlated_inputs(64, 20, seed=6)
    W = torch.randn(3, 20, generator=torch.Generator().manual_seed(7))
    keep = sparsegpt_prune(W, stats_of(x, hessian=True).H, 0.7, block=8)  # 8 + 8 + 4
    assert keep.sum(1).tolist() == [6, 6, 6]  # 20 - int(20 * 0.7)


@pytest.mark.parametrize("nm", [None, (2, 4)])
def test_dsnot_swaps_at_fixed_sparsity_and_shrinks_each_rows_expected_error(nm):
    x = correlated_inputs(256, 32, seed=4)
    W = torch.randn(16, 32, generator=torch.Generator().manual_seed(5))
    stats = stats_of(x)
    keep = wanda_mask(W, stats.sq_norm, 0.5, nm)
    refined = dsnot_refine(W, keep, stats, cycles=20, nm=nm)
    assert not torch.equal(refined, keep)  # it did something
    assert torch.equal(refined.sum(1), keep.sum(1))
    if nm:
        assert bool((refined.view(16, -1, 4).sum(-1) == 2).all())

    def expected_error(mask):
        return ((W.double() * ~mask) * stats.mean.unsqueeze(0)).sum(1).abs()

    assert bool((expected_error(refined) <= expected_error(keep) + 1e-9).all())
    shrink = 0.9 if nm else 0.75  # under N:M a swap stays inside a group of 4
    assert float(expected_error(refined).sum()) < shrink * float(expected_error(keep).sum())
    small = expected_error(keep) <= 0.1  # rows already within the threshold are left alone
    assert torch.equal(refined[small], keep[small])
    signed = ((W.double() * ~keep) * stats.mean.unsqueeze(0)).sum(1)
    after = ((W.double() * ~refined) * stats.mean.unsqueeze(0)).sum(1)
    assert bool((after * signed >= 0).all())  # no swap overshoots past zero


def test_blocks_are_calibrated_on_the_outputs_of_the_already_pruned_blocks():
    torch.manual_seed(0)
    model = GPT(256, 16, 32, 2, 2)
    batches = [torch.randint(256, (4, 16)) for _ in range(2)]
    seen: dict[str, torch.Tensor] = {}

    def prune(layers, stats):
        for name, layer in layers.items():
            seen[name] = stats[name].sq_norm.clone()
            layer.weight.data *= magnitude_mask(layer.weight, 0.5)

    pruned = prune_in_order(model, batches, prune)
    assert pruned == [f"blocks.{b}.{n}" for b in (0, 1) for n in ("qkv", "proj", "fc", "out")]
    assert float((model.blocks[1].qkv.weight == 0).float().mean()) == pytest.approx(0.5)
    # block 1's inputs, recomputed by hand on the model whose block 0 alone is pruned
    torch.manual_seed(0)
    by_hand = GPT(256, 16, 32, 2, 2)
    for layer in linear_layers(by_hand.blocks[0]).values():
        layer.weight.data *= magnitude_mask(layer.weight, 0.5)
    qkv1 = {"qkv": by_hand.blocks[1].qkv}
    expected = collect(qkv1, feeder(by_hand, batches), hessian=False)["qkv"].sq_norm
    assert seen["blocks.1.qkv"] == pytest.approx(expected)
    torch.manual_seed(0)
    dense = GPT(256, 16, 32, 2, 2)  # what block 1 would see if block 0 were not pruned
    unpruned = collect({"qkv": dense.blocks[1].qkv}, feeder(dense, batches), hessian=False)
    assert not torch.allclose(unpruned["qkv"].sq_norm, expected)


def test_a_model_without_linear_blocks_is_refused_not_reported_as_pruned():
    with pytest.raises(ValueError, match="no linear layer to prune"):
        prune_in_order(nn.Sequential(nn.ReLU()), [torch.zeros(1, 2)], lambda *_: None)
