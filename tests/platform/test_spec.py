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


LR = "parameters: {train.lr: {min: 1.0e-4, max: 1.0e-2, log: true}, "


@pytest.mark.parametrize("method", ["tpe", "cmaes", "nsga2", "qmc"])
def test_optuna_methods_preview_the_budget(method):
    spec = parse_spec(
        HEAD
        + f"method: {method}\ntrials: 5\n"
        + LR
        + "model.width: {min: 8, max: 64, int: true}}\n"
    )
    configs = resolve_trials(spec)
    assert len(configs) == 5 and all(8 <= c.model.width <= 64 for c in configs)


def test_multi_objective_and_early_stop_parse():
    spec = parse_spec(
        HEAD + "method: nsga2\ntrials: 4\n" + LR + "prune.sparsity: {values: [0.5, 0.9]}}\n"
        "objective: [{metric: val/acc, goal: maximize}, {metric: model/params}]\n"
        "early_stop: {type: asha, metric: val/acc, grace: 50, reduction: 2}\n"
    )
    assert [o.goal for o in spec.objectives] == ["maximize", "minimize"]
    assert spec.stop_target() == ("val/acc", "maximize")


@pytest.mark.parametrize(
    "text, field, words",
    [
        (
            HEAD + "method: cmaes\n" + LR + "prune.method: {values: [none, magnitude]}, "
            "prune.nm: {values: ['2:4']}}\n",
            "parameters.prune.method",
            ["prune.method, prune.nm"],
        ),
        (HEAD + "method: hillclimb\n", "method", ["tpe", "nsga2", "qmc"]),
        (
            HEAD
            + "method: cmaes\n"
            + LR
            + "}\nobjective: [{metric: val/acc}, {metric: val/loss}]\n",
            "objective",
            ["nsga2"],
        ),
        (HEAD + "objective: [{metric: val/acc}, {metric: val/acc}]\n", "objective", []),
        (HEAD + "objective: []\n", "objective", []),
        (HEAD + "early_stop: {type: asha, metric: train/loss}\n", "early_stop.goal", []),
        (HEAD + "early_stop: {type: sha}\n", "early_stop.type", ["asha"]),
    ],
)
def test_bad_search_settings_name_the_key(text, field, words):
    with pytest.raises(ConfigError) as info:
        parse_spec(text)
    assert info.value.field == field, str(info.value)
    assert all(w in str(info.value) for w in words), str(info.value)
