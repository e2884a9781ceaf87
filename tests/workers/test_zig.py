import re

import pytest
import torch
from torch import nn

from spx.errors import ConfigError
from spx.workers.cnn import CNN
from spx.workers.config import TrialConfig
from spx.workers.gpt import GPT
from spx.workers.methods import method_class
from spx.workers.tasks import build_task
from spx.workers.zig import Slice, groups, kept_count, removable


def _summary(model):
    return [(g.name, g.size, g.removable) for g in groups(model)]


def test_a_tiny_mlp_has_one_family_per_hidden_layer_and_the_output_is_not_removable():
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 5), nn.Tanh(), nn.Linear(5, 2))
    assert _summary(model) == [("0", 4, True), ("2", 5, True), ("4", 2, False)]
    hidden, second, out = groups(model)
    assert hidden.slices == (
        Slice("0.weight", "out", 0),
        Slice("0.bias", "out", 0),
        Slice("2.weight", "in", 1),
    )
    assert [s.name for s in second.slices] == ["2.weight", "2.bias", "4.weight"]
    assert out.reason == "the model's output"


def test_the_cnn_residual_stream_is_one_family_per_stage_with_norms_and_consumers():
    with torch.device("meta"):  # tracing needs no memory and no data
        model = CNN(classes=10, width=8, depth=2)
    assert _summary(model) == [
        ("stem+blocks.0.conv2", 8, True),  # stem, block 0's conv2 and the identity add
        ("blocks.0.conv1", 8, True),
        ("blocks.1.conv1", 16, True),
        ("blocks.1.conv2+blocks.1.shortcut.0", 16, True),  # joined by the projection add
        ("fc", 10, False),
    ]
    stream = groups(model)[0]
    by_kind = {k: sorted(s.name for s in stream.slices if s.kind == k) for k in ("out", "in")}
    assert by_kind == {
        "out": ["blocks.0.conv2.weight", "stem.weight"],
        "in": ["blocks.0.conv1.weight", "blocks.1.conv1.weight", "blocks.1.shortcut.0.weight"],
    }
    assert sorted(s.name for s in stream.slices if s.kind in ("norm", "stat")) == [
        f"{bn}.{p}"
        for bn in ("blocks.0.bn2", "bn")
        for p in ("bias", "running_mean", "running_var", "weight")
    ]
    last = groups(model)[3]
    assert Slice("fc.weight", "in", 1) in last.slices  # through the mean over H, W
    assert Slice("blocks.1.shortcut.1.bias", "norm", 0) in last.slices


def test_a_flatten_gives_each_channel_its_block_of_features():
    model = nn.Sequential(nn.Conv2d(1, 3, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(48, 2))
    conv = groups(model)[0]
    assert (conv.name, conv.size, conv.removable) == ("0", 3, True)
    assert Slice("3.weight", "in", 1, block=16) in conv.slices


def test_gpt_only_its_mlp_hidden_units_are_removable():
    with torch.device("meta"):
        model = GPT(vocab=256, context=16, width=32, depth=2, heads=4)
    assert [(g.name, g.size) for g in removable(model)] == [
        ("blocks.0.fc", 128),
        ("blocks.1.fc", 128),
    ]
    reasons = {g.name: g.reason for g in groups(model) if not g.removable}
    assert reasons["blocks.0.qkv"] == "op split"
    assert reasons["blocks.0.out"] == "an addition with a tensor outside the family"
    assert reasons["head"] == "the model's output"


class _Normed(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.norm, self.b = nn.Linear(4, 6), nn.LayerNorm(6), nn.Linear(6, 2)

    def forward(self, x):
        return self.b(self.norm(self.a(x)))


class _Skip(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Linear(4, 4), nn.Linear(4, 2)

    def forward(self, x):
        return self.b(self.a(x) * 2.0 + x)  # x is no family's: a's units cannot go alone


@pytest.mark.parametrize(
    ("model", "reason"),
    [(_Normed(), "LayerNorm norm"), (_Skip(), "an addition with a tensor outside the family")],
)
def test_families_reaching_what_the_tracer_cannot_reason_about_are_not_removable(model, reason):
    first = groups(model)[0]
    assert (first.name, first.removable, first.reason) == ("a", False, reason)


class _Gate(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Linear(4, 4), nn.Linear(4, 4)

    def forward(self, x):
        if x.sum() > 0:
            return self.a(x)
        return self.b(x)


class _Gated(nn.Module):
    def __init__(self):
        super().__init__()
        self.inp, self.gate, self.out = nn.Linear(4, 4), _Gate(), nn.Linear(4, 2)

    def forward(self, x):
        return self.out(self.gate(self.inp(x)))


@pytest.mark.parametrize("method", ["oto", "nodes"])
def test_an_untraceable_model_is_a_config_error_naming_the_module_and_the_op(method):
    with torch.device("meta"):
        model = _Gated()
    cfg = TrialConfig.from_flat("digits-mlp", {"prune.method": method, "prune.sparsity": 0.5})
    with pytest.raises(ConfigError) as err:
        method_class(method).validate(cfg, model)
    assert err.value.field == "prune.method" and err.value.value == method
    assert "module gate (_Gate)" in str(err.value)
    assert "`if x.sum() > 0:`" in str(err.value)


@pytest.mark.parametrize("task", ["digits-mlp", "digits-cnn", "code-gpt"])
@pytest.mark.parametrize("method", ["oto", "nodes"])
def test_every_task_validates_for_the_group_methods(task, method):
    cfg = TrialConfig.from_flat(task, {"prune.method": method, "prune.sparsity": 0.5})
    build_task(task).validate(cfg)  # meta-device model: traced, nothing allocated


@pytest.mark.parametrize(
    ("method", "sparsity", "message"),
    [
        ("nodes", 0.95, "nodes would keep no unit of 'net.0' (16 units)"),
        ("oto", 0.99, "oto would zero 32 of 32 groups"),
    ],
)
def test_a_target_the_groups_cannot_reach_is_a_config_error(method, sparsity, message):
    cfg = TrialConfig.from_flat(
        "digits-mlp", {"prune.method": method, "prune.sparsity": sparsity, "model.width": 16}
    )
    with pytest.raises(ConfigError, match=re.escape(message)) as err:
        build_task("digits-mlp").validate(cfg)
    assert (err.value.field, err.value.value) == ("prune.sparsity", sparsity)


def test_kept_count_is_floor_of_the_density_times_units():
    assert [kept_count(10, s) for s in (0.0, 0.5, 0.7, 0.9, 0.95)] == [10, 5, 3, 1, 0]
    assert kept_count(16, 0.7) == 4
