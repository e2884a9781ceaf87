import copy

import torch
from torch import nn

from spx.workers.cnn import CNN
from spx.workers.compact import compact, kept_units
from spx.workers.config import PruneConfig, ScheduleConfig, TrialConfig
from spx.workers.digits import load
from spx.workers.gpt import GPT
from spx.workers.loop import advance, build_state
from spx.workers.methods import Channel
from spx.workers.mlp import MLP
from spx.workers.oto import Nodes
from spx.workers.tasks import build_task

X = load()[1].x  # the 359 held-out digits


def _max_diff(full, small, x):
    full.eval(), small.eval()
    with torch.no_grad():
        return float((full(x) - small(x)).abs().max())


def _nodes(model, sparsity=0.5, seed=3):
    pruner = Nodes(PruneConfig(method="nodes", sparsity=sparsity, mask_seed=seed), model, steps=1)
    pruner.apply()
    return pruner


def _lively_norms(model):
    """BatchNorm with nonzero β and running stats, so a half-zeroed unit would show."""
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                for t, lo, hi in ((m.weight, 0.5, 1.5), (m.bias, -0.5, 0.5)):
                    t.copy_(torch.rand(t.shape, generator=gen) * (hi - lo) + lo)
                m.running_mean.copy_(torch.rand(m.num_features, generator=gen) - 0.5)
                m.running_var.copy_(torch.rand(m.num_features, generator=gen) + 0.5)


def test_mlp_nodes_compacts_to_the_kept_units_with_equal_outputs():
    torch.manual_seed(0)
    model = MLP(64, 10, width=32, depth=2)
    pruner = _nodes(model)
    small, counts = compact(model, X[:1], pruner)
    assert _max_diff(model, small, X) <= 1e-5
    assert [small.net[i].weight.shape for i in (0, 2, 4)] == [(16, 64), (16, 16), (10, 16)]
    assert (counts.full.params, counts.small.params) == (3466, 1482)
    assert (counts.full.flops, counts.small.flops) == (3392, 64 * 16 + 16 * 16 + 16 * 10)
    assert counts.removed == {"net.0": 16, "net.2": 16} and counts.stuck == {}
    assert counts.metrics()["compact/params"] == 1482


def test_cnn_nodes_compacts_residual_blocks_with_equal_outputs():
    torch.manual_seed(0)
    model = CNN(classes=10, width=8, depth=2)
    _lively_norms(model)
    small, counts = compact(model, X[:1], _nodes(model))
    assert _max_diff(model, small, X) <= 1e-5
    assert small.stem.out_channels == small.bn.num_features == small.blocks[0].conv2.out_channels
    assert small.blocks[1].shortcut[0].weight.shape == (8, 4, 1, 1)
    # kept 4 | 4 | 8 | 8 channels: stem 36, block 0 144 + 144, block 1 288 + 576 + 32,
    # six BatchNorms 8 + 8 + 8 + 16 + 16 + 16, fc 90
    assert (counts.full.params, counts.small.params) == (5122, 1382)
    assert counts.small.flops < counts.full.flops / 3


def test_a_cnn_trained_with_oto_compacts_with_equal_outputs():
    cfg = TrialConfig.from_flat(
        "digits-cnn",
        {
            "train.steps": 12,
            "model.width": 8,
            "prune.method": "oto",
            "prune.sparsity": 0.5,
            "prune.oto_end": 0.5,
        },
    )
    task = build_task("digits-cnn")
    state = build_state(cfg, task)
    batches = task.batches(cfg, state.generator)
    while state.step < cfg.train.steps:  # BatchNorm in train mode all along
        advance(state, task, next(batches))
    assert state.pruner.zeros() == 24  # half of 8 + 8 + 16 + 16
    small, counts = compact(state.model, X[:1], state.pruner)
    assert _max_diff(state.model, small, X) <= 1e-5
    assert sum(counts.removed.values()) == 24
    inferred = {k: v.tolist() for k, v in kept_units(state.model).items()}  # from zeros alone
    assert inferred == {k: v.tolist() for k, v in state.pruner.kept().items()}


def test_gpt_mlp_blocks_compact_with_equal_outputs():
    torch.manual_seed(0)
    model = GPT(vocab=256, context=16, width=32, depth=2, heads=4)
    small, counts = compact(model, torch.zeros(1, 16, dtype=torch.long), _nodes(model))
    tokens = torch.randint(0, 256, (8, 16), generator=torch.Generator().manual_seed(0))
    assert _max_diff(model, small, tokens) <= 1e-5
    assert small.blocks[0].fc.weight.shape == (64, 32) and small.blocks[0].out.in_features == 64
    assert small.head.weight is small.tokens.weight  # the tie survives the copy
    assert (counts.full.params, counts.small.params) == (34176, 34176 - 2 * 64 * (32 + 1 + 32))


def _channel(model, sparsity=0.5):
    schedule = ScheduleConfig(kind="one-shot", start=0.0, end=0.0)
    cfg = PruneConfig(method="channel", sparsity=sparsity, schedule=schedule)
    pruner = Channel(cfg, model, steps=1)
    pruner.before_step(0, torch.optim.SGD(model.parameters(), lr=0.1))
    return pruner


def test_channel_pruned_neurons_fold_their_constant_into_the_next_bias():
    torch.manual_seed(0)
    model = MLP(64, 10, width=32, depth=2)
    _channel(model)  # zero rows, live biases: each pruned neuron outputs relu(b_j)
    small, counts = compact(model, X[:1])
    assert _max_diff(model, small, X) <= 1e-5
    # 0.5 of all 3392 prunable weights with the 320 of the output layer whole: 18 of 32 rows
    assert counts.removed == {"net.0": 18, "net.2": 18} and counts.stuck == {}
    assert counts.small.params == 1270


def test_channel_pruned_conv_channels_read_by_a_conv_stay_in():
    torch.manual_seed(0)
    model = CNN(classes=10, width=8, depth=2)
    _lively_norms(model)
    with torch.no_grad():  # a pruned conv1 channel then outputs relu(β) > 0
        for block in model.blocks:
            block.bn1.running_mean.zero_()
            block.bn1.bias.copy_(torch.linspace(0.1, 1.0, block.bn1.num_features))
    _channel(model)
    small, counts = compact(model, X[:1])
    assert _max_diff(model, small, X) <= 1e-5
    # a constant channel read by a conv cannot fold: zero padding makes it position-dependent
    assert counts.stuck == {"blocks.0.conv1": 4, "blocks.1.conv1": 8}
    assert counts.removed["blocks.1.conv2+blocks.1.shortcut.0"] > 0  # read by fc: folded
    assert counts.small.params < counts.full.params


class _FlatNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv, self.fc = nn.Conv2d(1, 6, 3, padding=1), nn.Linear(6 * 64, 10)

    def forward(self, x):
        return self.fc(torch.flatten(torch.relu(self.conv(x.view(-1, 1, 8, 8))), 1))


def test_a_flatten_between_conv_and_linear_compacts_whole_channel_blocks():
    torch.manual_seed(0)
    model = _FlatNet()
    small, counts = compact(model, X[:1], _nodes(model))
    assert _max_diff(model, small, X) <= 1e-5
    assert small.fc.weight.shape == (10, 3 * 64)
    assert counts.small.flops == 3 * 9 * 64 + 10 * 3 * 64


def test_keep_vectors_by_group_name_are_a_source_too():
    torch.manual_seed(0)
    model = MLP(64, 10, width=8, depth=1)
    keep = {"net.0": torch.tensor([True, False] * 4)}
    with torch.no_grad():
        model.net[0].weight[~keep["net.0"]] = 0
        model.net[2].weight[:, ~keep["net.0"]] = 0
    assert kept_units(copy.deepcopy(model), keep)["net.0"].tolist() == keep["net.0"].tolist()
    small, counts = compact(model, X[:1], keep)
    assert _max_diff(model, small, X) <= 1e-5
    assert small.net[0].out_features == 4 and counts.removed == {"net.0": 4}
