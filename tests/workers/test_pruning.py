import torch
from torch import nn

from spx.workers.config import PruneConfig, ScheduleConfig
from spx.workers.masks import MaskSet, keep_top, prunable_weights
from spx.workers.pruner import Pruner


def test_keep_top_on_a_literal_4x4():
    w = torch.tensor(
        [[0.1, -0.9, 0.3, 0.0], [2.0, -0.05, 0.4, -0.6], [0.2, 0.7, -1.5, 0.01], [0.8, 0.0, 0.02, -0.3]]
    )
    mask = keep_top(w.abs(), keep=6)
    assert mask.int().tolist() == [[0, 1, 0, 0], [1, 0, 0, 1], [0, 1, 1, 0], [1, 0, 0, 0]]


def test_prunable_weights_skip_biases_norms_and_tied_embeddings():
    from spx.workers.gpt import GPT

    names = set(prunable_weights(GPT(256, 8, 16, 1, 2)))
    assert names == {"blocks.0.qkv.weight", "blocks.0.proj.weight", "blocks.0.fc.weight",
                     "blocks.0.out.weight"}
    assert "tokens.weight" in prunable_weights(GPT(256, 8, 16, 1, 2), embeddings=True)


def _pruner(model: nn.Module, sparsity: float) -> Pruner:
    cfg = PruneConfig(method="magnitude", sparsity=sparsity,
                      schedule=ScheduleConfig(kind="one-shot", start=0.0, end=0.0))
    return Pruner.build(cfg, model, total_steps=10)


def test_magnitude_reaches_the_target_exactly_per_layer():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(10, 7), nn.ReLU(), nn.Linear(7, 3))
    pruner = _pruner(model, 0.6)
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
    pruner = _pruner(model, 0.5)
    opt = torch.optim.AdamW(model.parameters(), lr=0.1, weight_decay=0.1)
    x = torch.randn(16, 8)
    for step in range(5):
        pruner.before_step(step, opt)
        opt.zero_grad()
        model(x).pow(2).sum().backward()
        pruner.mask_grads()
        opt.step()
        pruner.after_step()
    mask = pruner.masks.masks["0.weight"]
    assert bool((model[0].weight[~mask] == 0).all())
    assert bool((opt.state[model[0].weight]["exp_avg"][~mask] == 0).all())
    assert MaskSet(prunable_weights(model)).numel() == 64
