"""One-shot post-training pruning of whole models: masks keyed like the loop's, in each
weight's own layout, at the sparsity asked, and better than magnitude on the model's loss."""

from __future__ import annotations

import copy
import functools

import pytest
import torch
from torch.nn import functional as F

from spx.workers.gpt import GPT
from spx.workers.masks import prunable_weights
from spx.workers.oneshot import Recipe, calibration_identity, prune_model


def trained_gpt() -> tuple[GPT, list[torch.Tensor]]:
    """A fresh copy of one small GPT fitted to a repetitive byte stream, and its data."""
    model, batches = _trained()
    return copy.deepcopy(model), batches


@functools.cache
def _trained() -> tuple[GPT, list[torch.Tensor]]:
    torch.manual_seed(0)
    model = GPT(256, 16, 48, 2, 2)
    text = torch.tensor(list(b"def f(x):\n    return x + 1\n" * 64))
    starts = torch.randint(len(text) - 17, (64,))
    x = torch.stack([text[s : s + 17] for s in starts])
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for _ in range(30):
        opt.zero_grad()
        F.cross_entropy(model(x[:, :-1]).flatten(0, 1), x[:, 1:].flatten()).backward()
        opt.step()
    return model, [x[:32, :-1], x[32:, :-1]]


def loss(model, batches) -> float:
    with torch.no_grad():
        x = torch.cat(batches)
        return float(F.cross_entropy(model(x[:, :-1]).flatten(0, 1), x[:, 1:].flatten()))


@pytest.mark.parametrize("method", ["magnitude", "wanda", "sparsegpt"])
def test_each_method_prunes_the_blocks_to_the_sparsity_asked(method):
    model, batches = trained_gpt()
    wanted = set(prunable_weights(model))
    masks = prune_model(model, batches, Recipe(method, 0.6), wanted)
    assert set(masks) == {n for n in wanted if n.startswith("blocks.")}
    weights = dict(model.named_parameters())
    for name, keep in masks.items():
        assert keep.shape == weights[name].shape
        # each row drops int(in x sparsity) of its weights
        assert float(keep.float().mean()) == pytest.approx(0.4, abs=0.02)
        assert bool((weights[name][~keep] == 0).all())


def test_calibration_aware_methods_lose_less_than_magnitude_at_the_same_sparsity():
    results = {}
    for method in ("magnitude", "wanda", "sparsegpt"):
        model, batches = trained_gpt()
        prune_model(model, batches, Recipe(method, 0.7, block=16))
        results[method] = loss(model, batches)
    assert results["sparsegpt"] < results["magnitude"]
    assert results["wanda"] < results["magnitude"]


def test_dsnot_refinement_keeps_the_sparsity_and_n_of_every_m():
    model, batches = trained_gpt()
    masks = prune_model(model, batches, Recipe("wanda", 0.5, nm=(2, 4), refine="dsnot"))
    for keep in masks.values():
        assert bool((keep.reshape(keep.shape[0], -1, 4).sum(-1) == 2).all())


def test_the_calibration_identity_changes_with_the_tokens():
    _, batches = trained_gpt()
    one, same = calibration_identity(batches), calibration_identity([b.clone() for b in batches])
    other = calibration_identity([batches[1], batches[0]])
    assert one == same and one.digest != other.digest
    assert (one.samples, one.seq_len) == (64, 16)


def test_gpt2_conv1d_masks_come_back_in_the_weights_own_layout(tmp_path):
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    config = transformers.GPT2Config(vocab_size=256, n_positions=32, n_embd=32, n_layer=2, n_head=2)
    model = transformers.GPT2LMHeadModel(config)
    batches = [torch.randint(256, (4, 16)) for _ in range(2)]
    masks = prune_model(model, batches, Recipe("wanda", 0.5), set(prunable_weights(model)))
    c_fc = model.transformer.h[0].mlp.c_fc.weight  # in x out: 32 x 128
    keep = masks["transformer.h.0.mlp.c_fc.weight"]
    assert keep.shape == c_fc.shape == (32, 128)
    # Wanda compares per output row: every output (a column of the stored weight) keeps half
    assert keep.sum(0).tolist() == [16] * 128
    assert bool((c_fc[~keep] == 0).all())
