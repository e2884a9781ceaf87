"""A tied embedding with ``prune.embeddings: true`` is one tensor: one mask, counted once.

code-gpt's head shares the token embedding's weight. Each method below trains a toy GPT at
50 % zeros (RigL and SET also redraw their masks once), and the tied tensor must come out
at the density ``model/sparsity`` says, with ``model/params`` the hand count.
"""

from __future__ import annotations

import pytest
import torch

from spx.workers.config import TrialConfig
from spx.workers.loop import ListReporter, _run, build_state
from spx.workers.tasks import build_task

WIDTH, CONTEXT, VOCAB = 16, 8, 256
# Hand count of GPT(256, context 8, width 16, depth 1): tokens (tied to the head) 256*16,
# positions 8*16, qkv 3*16*16 + 48, proj 16*16 + 16, fc 4*16*16 + 64, out 4*16*16 + 16,
# three LayerNorms 3 * 2*16.
TOKENS, POSITIONS = VOCAB * WIDTH, CONTEXT * WIDTH
LINEARS = 3 * WIDTH**2 + WIDTH**2 + 4 * WIDTH**2 + 4 * WIDTH**2
DENSE = TOKENS + POSITIONS + LINEARS + (3 + 1 + 4 + 1) * WIDTH + 3 * 2 * WIDTH
PRUNABLE = TOKENS + POSITIONS + LINEARS  # embeddings too; every layer at 50 % (uniform)
KNOBS = {
    "magnitude": {"prune.schedule.kind": "one-shot", "prune.schedule.end": 0.0},
    "random": {},
    "rigl": {"prune.update_every": 2},
    "set": {"prune.update_every": 2},
}


@pytest.fixture(scope="module")
def task(tmp_path_factory):
    return build_task("code-gpt", tmp_path_factory.mktemp("data"))


@pytest.mark.parametrize("method", sorted(KNOBS))
def test_the_tied_tensor_has_one_mask_at_the_reported_density(task, method):
    flat = {
        "train.steps": 4,
        "train.batch_size": 4,
        "train.report_every": 2,
        "model.width": WIDTH,
        "model.depth": 1,
        "model.heads": 2,
        "model.context": CONTEXT,
        "prune.method": method,
        "prune.sparsity": 0.5,
        "prune.schedule.start": 0.0,
        "prune.embeddings": True,
        **KNOBS[method],
    }
    cfg = TrialConfig.from_flat("code-gpt", flat)
    state = build_state(cfg, task)
    try:
        final = _run(state, task, ListReporter(), None, None)
    finally:
        state.engine.close()
    model, masks = state.model, state.pruner.masks
    assert model.head.weight is model.tokens.weight
    realised = float((model.tokens.weight != 0).float().mean())
    assert realised == 1 - final["model/sparsity"] == 0.5
    assert final["model/params"] == final["model/params_avg"] == DENSE - PRUNABLE // 2
    assert [n for n, w in masks.weights.items() if w is model.tokens.weight] == ["tokens.weight"]
    # The head's matmul is counted at the tied mask's density, once per position.
    per_position = (LINEARS + TOKENS) // 2
    assert final["model/flops"] == CONTEXT * per_position
    assert final["model/flops_per_token"] == 2 * per_position


def test_a_tied_weight_is_pruned_and_counted_once_without_training():
    from spx.workers.accounting import Accountant
    from spx.workers.gpt import GPT
    from spx.workers.masks import MaskSet, mask_names, prunable_weights

    model = GPT(VOCAB, CONTEXT, WIDTH, 1, 2)
    weights = prunable_weights(model, embeddings=True)
    assert list(weights)[:2] == ["tokens.weight", "positions.weight"]
    assert "head.weight" not in weights
    assert mask_names(model, weights)["head.weight"] == "tokens.weight"
    acct = Accountant.build(model, MaskSet(weights), torch.zeros(1, CONTEXT, dtype=torch.long))
    assert acct.params_now() == DENSE == sum(p.numel() for p in model.parameters())
    assert acct.masks.numel() == PRUNABLE
