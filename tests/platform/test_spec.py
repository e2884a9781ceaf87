from pathlib import Path

import pytest

from spx.errors import ConfigError
from spx.platform.spec import load_spec, parse_spec, resolve_trials

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


# Conditions, constraints, replicates

BRANCHES = HEAD + (
    "parameters:\n"
    "  prune.method: {values: [magnitude, nm, rigl]}\n"
    "  prune.nm: {values: ['2:4', '1:4']}\n"
    "  prune.drop_fraction: {values: [0.1, 0.5]}\n"
    "conditions:\n"
    "  prune.nm: {prune.method: nm}\n"
    "  prune.drop_fraction: {prune.method: [rigl]}\n"
)


def test_a_conditional_grid_runs_each_branch_once_and_inactive_keys_keep_their_default():
    configs = resolve_trials(parse_spec(BRANCHES))
    assert [(c.prune.method, c.prune.nm, c.prune.drop_fraction) for c in configs] == [
        ("magnitude", "2:4", 0.3),
        ("nm", "2:4", 0.3),
        ("nm", "1:4", 0.3),
        ("rigl", "2:4", 0.1),
        ("rigl", "2:4", 0.5),
    ]


def test_a_conditional_key_may_also_be_fixed_for_where_it_is_inactive():
    spec = parse_spec(BRANCHES + "fixed: {prune.drop_fraction: 0.2}\n")
    assert [c.prune.drop_fraction for c in resolve_trials(spec)] == [0.2, 0.2, 0.2, 0.1, 0.5]


@pytest.mark.parametrize("method", ["random", "tpe"])
def test_sampled_methods_preview_only_active_keys(method):
    spec = parse_spec(
        HEAD + f"method: {method}\ntrials: 30\n"
        "parameters:\n"
        "  prune.method: {values: [magnitude, rigl]}\n"
        "  prune.drop_fraction: {min: 0.1, max: 0.2}\n"
        "conditions: {prune.drop_fraction: {prune.method: rigl}}\n"
    )
    configs = resolve_trials(spec)
    assert {c.prune.method for c in configs} == {"magnitude", "rigl"}
    assert all((0.1 <= c.prune.drop_fraction <= 0.2) == (c.prune.method == "rigl") for c in configs)


P2 = HEAD + "parameters: {prune.method: {values: [nm, rigl]}, prune.nm: {values: ['2:4']}}\n"


@pytest.mark.parametrize(
    "text, field, words",
    [
        (
            P2 + "conditions: {prune.sparsity: {prune.method: nm}}\n",
            "conditions.prune.sparsity",
            [],
        ),
        (P2 + "conditions: {prune.nm: {prune.rate: 1}}\n", "conditions.prune.nm.prune.rate", []),
        (
            HEAD + "method: random\nparameters: {prune.sparsity: {min: 0, max: 0.9}, "
            "prune.nm: {values: ['2:4']}}\nconditions: {prune.nm: {prune.sparsity: 0.5}}\n",
            "conditions.prune.nm.prune.sparsity",
            ["range"],
        ),
        (
            P2 + "conditions: {prune.nm: {prune.method: [nm, set]}}\n",
            "conditions.prune.nm.prune.method",
            ["'set'", "never"],
        ),
        (
            P2 + "conditions: {prune.nm: {prune.method: nm}, prune.method: {prune.nm: '2:4'}}\n",
            "conditions.prune.method",
            ["cycle"],
        ),
        (P2 + "conditions: {prune.nm: {}}\n", "conditions.prune.nm", []),
        (
            HEAD + "fixed: {prune.nm: '1:4'}\nparameters: {prune.nm: {values: ['2:4']}}\n",
            "parameters.prune.nm",
            ["fixed and searched"],
        ),
    ],
)
def test_bad_conditions_name_the_key(text, field, words):
    with pytest.raises(ConfigError) as info:
        parse_spec(text)
    assert info.value.field == field, str(info.value)
    assert all(w in str(info.value) for w in words), str(info.value)


SCHEDULE = HEAD + (
    "parameters: {prune.schedule.start: {values: [0.0, 0.5]}, "
    "prune.schedule.end: {values: [0.25, 0.75]}}\n"
)


def test_grid_drops_points_that_break_a_constraint_even_those_the_model_rejects():
    spec = parse_spec(SCHEDULE + "constraints: ['prune.schedule.start < prune.schedule.end']\n")
    configs = resolve_trials(spec)
    assert [(c.prune.schedule.start, c.prune.schedule.end) for c in configs] == [
        (0.0, 0.25),
        (0.0, 0.75),
        (0.5, 0.75),
    ]


def test_constraints_are_judged_on_fixed_keys_and_defaults_too():
    text = HEAD + "parameters: {train.lr: {values: [0.001, 0.01]}}\n"
    with pytest.raises(ConfigError) as info:  # train.steps defaults to 300
        parse_spec(text + "constraints: ['train.steps >= 500']\n")
    assert info.value.field == "constraints[0]"
    spec = parse_spec(text + "fixed: {train.steps: 600}\nconstraints: ['train.steps >= 500']\n")
    assert len(resolve_trials(spec)) == 2


@pytest.mark.parametrize(
    "text, field, words",
    [
        (
            SCHEDULE + "constraints: ['train.steps > 0', 'prune.schedule.start > 0.6']\n",
            "constraints[1]",
            ["no config", "prune.schedule.start > 0.6"],
        ),
        (
            HEAD + "method: tpe\ntrials: 4\nparameters: {train.lr: {min: 1.0e-4, max: 1.0e-2}}\n"
            "constraints: ['train.lr > 0.5']\n",
            "constraints[0]",
            ["1000 random draws"],
        ),
        (HEAD + "constraints: ['train.lr = 0.5']\n", "constraints[0]", ["train.lr = 0.5"]),
        (
            HEAD + "constraints: ['train.lr > 0', 'train.lrr < 1']\n",
            "constraints[1]",
            ["did you mean 'train.lr'"],
        ),
        (HEAD + "constraints: 'train.lr > 0'\n", "constraints", []),
    ],
)
def test_bad_or_impossible_constraints_name_the_index(text, field, words):
    with pytest.raises(ConfigError) as info:
        parse_spec(text)
    assert info.value.field == field, str(info.value)
    assert all(w in str(info.value) for w in words), str(info.value)


def test_replicates_run_each_config_once_per_seed():
    spec = parse_spec(
        HEAD
        + "parameters: {prune.sparsity: {values: [0.5, 0.9]}}\nreplicates: {seeds: [4, 5, 6]}\n"
    )
    configs = resolve_trials(spec)
    assert [(c.prune.sparsity, c.train.seed) for c in configs] == [
        (0.5, 4),
        (0.5, 5),
        (0.5, 6),
        (0.9, 4),
        (0.9, 5),
        (0.9, 6),
    ]


@pytest.mark.parametrize(
    "text, field",
    [
        (HEAD + "fixed: {train.seed: 1}\nreplicates: {seeds: [0, 1]}\n", "replicates.seeds"),
        (
            HEAD + "parameters: {train.seed: {values: [1, 2]}}\nreplicates: {seeds: [0, 1]}\n",
            "replicates.seeds",
        ),
        (HEAD + "replicates: {seeds: [0, 0]}\n", "replicates.seeds"),
        (HEAD + "replicates: {seeds: []}\n", "replicates.seeds"),
        (
            HEAD + "replicates: {seeds: [0, 1]}\nconstraints: ['train.seed < 5']\n",
            "constraints[0]",
        ),
    ],
)
def test_bad_replicates_name_the_field(text, field):
    with pytest.raises(ConfigError) as info:
        parse_spec(text)
    assert info.value.field == field, str(info.value)


def test_the_conditional_example_validates():
    spec, _ = load_spec(Path(__file__).parents[2] / "examples" / "conditional.yaml")
    configs = resolve_trials(spec)
    assert len(configs) == spec.budget() * 2
    for c in configs:
        assert (c.prune.sparsity == 0.0) == (c.prune.method == "nm")
        assert c.prune.schedule.start < c.prune.schedule.end


EXAMPLES = sorted((Path(__file__).parents[2] / "examples").glob("*.yaml"))


def test_there_are_examples_to_check():
    assert len(EXAMPLES) >= 8


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_every_example_validates_unchanged(path):
    spec, text = load_spec(path)
    assert text == path.read_text() and resolve_trials(spec, limit=1)


@pytest.mark.parametrize(
    "fixed, field, value",
    [
        ("train.steps: true", "fixed.train.steps", True),
        ("train.lr: yes", "fixed.train.lr", "yes"),
        ("train.lr: '0.01'", "fixed.train.lr", "0.01"),
        ("prune.nm: 24", "fixed.prune.nm", 24),
        ("prune.schedule.every: 2.5", "fixed.prune.schedule.every", 2.5),
        ("prune.embeddings: 1", "fixed.prune.embeddings", 1),
    ],
)
def test_a_value_of_the_wrong_kind_is_refused_not_converted(fixed, field, value):
    with pytest.raises(ConfigError) as info:
        parse_spec(HEAD + f"fixed: {{{fixed}}}\n")
    assert (info.value.field, info.value.value) == (field, value)


def test_true_false_and_numbers_still_read_as_written():
    fixed = "{prune.embeddings: true, train.lr: 1e-3, train.steps: 40, prune.nm: 1:4}"
    spec = parse_spec(HEAD + f"fixed: {fixed}\n")
    cfg = resolve_trials(spec)[0]
    assert (cfg.prune.embeddings, cfg.train.lr, cfg.train.steps) == (True, 0.001, 40)
    assert spec.fixed["prune.nm"] == "1:4"  # YAML 1.1 read 1:4 as the number 64


def test_a_custom_task_is_imported_from_the_sweep_files_folder(tmp_path):
    (tmp_path / "h8_spec_task.py").write_text(
        "from spx.workers.tasks import DigitsMLP\nclass T(DigitsMLP):\n    pass\n"
    )
    sweep = tmp_path / "s.yaml"
    sweep.write_text("name: s\ntask: h8_spec_task:T\n")
    spec, _ = load_spec(sweep)
    assert spec.import_path == (str(tmp_path.resolve()),)
    assert parse_spec(HEAD).import_path == ()
