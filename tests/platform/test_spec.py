import pytest

from spx.errors import ConfigError
from spx.platform.spec import parse_spec, resolve_trials

HEAD = "name: s\ntask: digits-mlp\n"


def test_mapping_values_set_several_keys_at_once():
    spec = parse_spec(
        HEAD
        + "parameters:\n  prune: {values: [{method: none}, {method: magnitude, sparsity: 0.9}]}\n"
    )
    configs = resolve_trials(spec)
    assert [(c.prune.method, c.prune.sparsity) for c in configs] == [
        ("none", 0.0),
        ("magnitude", 0.9),
    ]


def test_fixed_values_reach_every_trial_and_grid_ignores_trials():
    spec = parse_spec(
        HEAD
        + "trials: 1\nfixed: {train.steps: 42}\nparameters: {train.seed: {values: [0, 1, 2]}}\n"
    )
    configs = resolve_trials(spec)
    assert [c.train.seed for c in configs] == [0, 1, 2]
    assert {c.train.steps for c in configs} == {42}


def test_random_search_uses_the_budget():
    spec = parse_spec(
        HEAD + "method: random\ntrials: 7\n"
        "parameters: {train.lr: {min: 1.0e-4, max: 1.0e-2, log: true}}\n"
    )
    assert len(resolve_trials(spec)) == 7


@pytest.mark.parametrize(
    "text, field",
    [
        (HEAD + "resources: {concurent: 2}\n", "resources.concurent"),
        (HEAD + "fixed: {model.width: 0}\n", "fixed.model.width"),
        (
            HEAD + "fixed: {train.steps: 1}\nparameters: {train.steps: {values: [2]}}\n",
            "parameters.train.steps",
        ),
        (
            "name: s\ntask: code-gpt\nparameters: {model.width: {values: [64, 30]}}\n",
            "parameters.model.width",
        ),
        (
            HEAD + "method: random\nparameters: {train.lr: {min: -1, max: 1, log: true}}\n",
            "parameters.train.lr",
        ),
        (
            HEAD + "parameters: {prune.schedule.start: {values: [0.9]}}\n",
            "parameters.prune.schedule.start",
        ),
        (HEAD + "seed: -1\n", "seed"),
        (HEAD + "trials: 1e99\n", "trials"),
        ("name: 'a/b'\ntask: digits-mlp\n", "name"),
    ],
)
def test_bad_specs_name_the_field(text, field):
    with pytest.raises(ConfigError) as info:
        parse_spec(text)
    assert info.value.field is not None and info.value.field.startswith(field), str(info.value)
