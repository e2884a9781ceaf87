import pytest

from spx.errors import ConfigError
from spx.workers.config import TrialConfig
from spx.workers.tasks import build_task


def _cfg(task="digits-mlp", **flat):
    return TrialConfig.from_flat(task, flat, "fixed.")


def test_the_new_prune_keys_have_the_spec_defaults():
    p = _cfg().prune
    assert (p.min_layer_fraction, p.distribution, p.rate, p.nm) == (0.0005, "uniform", 0.2, "2:4")
    assert (p.srste_decay, p.update_every, p.drop_fraction, p.update_end) == (2e-4, 100, 0.3, 0.75)


@pytest.mark.parametrize(
    ("flat", "field", "echo"),
    [
        ({"prune.nm": "2-4"}, "fixed.prune.nm", "'2-4'"),
        ({"prune.nm": "5:4"}, "fixed.prune.nm", "'5:4'"),
        ({"prune.sparsity": 1.0}, "fixed.prune.sparsity", "1.0"),
        ({"prune.method": "snap"}, "fixed.prune.method", "'snap'"),
        ({"prune.distribution": "erdos"}, "fixed.prune.distribution", "'erdos'"),
        ({"prune.method": "lottery", "prune.rewind_step": 300}, "fixed.prune.rewind_step", "300"),
        ({"prune.method": "nm", "prune.sparsity": 0.9}, "fixed.prune.sparsity", "0.9"),
        (
            {"prune.method": "lottery", "prune.rounds": 4, "prune.sparsity": 0.3},
            "fixed.prune.rounds",
            "4",
        ),
    ],
)
def test_bad_prune_values_name_the_key_and_echo_the_value(flat, field, echo):
    with pytest.raises(ConfigError) as err:
        _cfg(**flat)
    assert err.value.field == field
    assert f"(got {echo})" in str(err.value)


def test_cross_field_checks_only_bind_their_own_method():
    assert _cfg(**{"prune.rewind_step": 900}).prune.rewind_step == 900  # not a lottery
    assert _cfg(**{"prune.method": "nm", "prune.sparsity": 0.5}).prune.method == "nm"


def test_nm_group_size_must_divide_every_layer_input_at_validation():
    task = build_task("digits-mlp")
    task.validate(_cfg(**{"prune.method": "nm", "model.width": 32}))
    with pytest.raises(ConfigError) as err:
        task.validate(_cfg(**{"prune.method": "nm", "model.width": 30}))
    assert err.value.field == "prune.nm" and "net.2.weight (30, 30) has 30 inputs" in str(err.value)
    cnn = build_task("digits-cnn")
    cnn.validate(_cfg("digits-cnn", **{"prune.method": "nm", "prune.nm": "4:8", "model.width": 8}))
    with pytest.raises(ConfigError, match="blocks.0.conv1.weight"):
        cnn.validate(_cfg("digits-cnn", **{"prune.method": "nm", "model.width": 6}))
