import pytest

from spx.errors import ConfigError
from spx.search.constraints import Constraints, parse_constraint, parse_constraints
from spx.search.grid import GridSearch
from spx.search.random_search import RandomSearch
from spx.search.space import Categorical, Condition, FloatRange, IntRange, grid_points


def _drain(strategy):
    out = []
    while (s := strategy.ask()) is not None:
        out.append(s)
    return out


def test_grid_enumerates_every_combination_in_order():
    grid = GridSearch({"a": Categorical((1, 2, 3)), "b": Categorical((True, False))})
    points = _drain(grid)
    assert grid.total == 6
    assert [s.number for s in points] == list(range(6))
    assert [tuple(s.params.values()) for s in points] == [
        (1, True),
        (1, False),
        (2, True),
        (2, False),
        (3, True),
        (3, False),
    ]


def test_random_is_deterministic_from_seed_and_index_and_stays_in_bounds():
    space = {
        "lr": FloatRange(1e-4, 1e-2, log=True),
        "width": IntRange(8, 64),
        "method": Categorical(("none", "magnitude")),
    }
    a = _drain(RandomSearch(space, trials=50, seed=3))
    b = _drain(RandomSearch(space, trials=50, seed=3))
    c = _drain(RandomSearch(space, trials=50, seed=4))
    assert a == b and a != c
    assert len(a) == 50
    assert all(1e-4 <= s.params["lr"] <= 1e-2 for s in a)
    assert all(8 <= s.params["width"] <= 64 and isinstance(s.params["width"], int) for s in a)
    assert {s.params["method"] for s in a} == {"none", "magnitude"}
    # trial i does not depend on how many trials the sweep asks for
    assert RandomSearch(space, trials=5, seed=3).sample(4) == a[4].params


def test_log_int_range_covers_both_ends():
    axis = IntRange(1, 4, log=True)
    import random

    seen = {axis.sample(random.Random(i)) for i in range(400)}
    assert seen == {1, 2, 3, 4}


# Conditions and constraints

METHODS = {
    "prune.method": Categorical(("magnitude", "nm", "rigl")),
    "prune.nm": Categorical(("2:4", "1:4")),
    "prune.drop_fraction": Categorical((0.1, 0.3, 0.5)),
    "prune.distribution": Categorical(("uniform", "erk")),
}
IF = (
    Condition("prune.nm", "prune.method", ("nm",)),
    Condition("prune.drop_fraction", "prune.method", ("rigl",)),
    Condition("prune.distribution", "prune.method", ("magnitude", "rigl")),
)


def test_a_conditional_grid_is_the_union_of_its_branches_each_config_once():
    points = [s.params for s in _drain(GridSearch(METHODS, IF))]
    # magnitude: 2 distributions; nm: 2 patterns; rigl: 3 fractions x 2 distributions
    assert len(points) == 2 + 2 + 6
    assert len({tuple(sorted(p.items())) for p in points}) == len(points)
    assert points[:4] == [
        {"prune.method": "magnitude", "prune.distribution": "uniform"},
        {"prune.method": "magnitude", "prune.distribution": "erk"},
        {"prune.method": "nm", "prune.nm": "2:4"},
        {"prune.method": "nm", "prune.nm": "1:4"},
    ]


def test_a_condition_below_a_conditional_parent_follows_it():
    space = {
        "c": Categorical((1, 2)),  # declared before its parent: order comes from conditions
        "a": Categorical(("x", "y")),
        "b": Categorical((True, False)),
    }
    conditions = (Condition("b", "a", ("y",)), Condition("c", "b", (True,)))
    assert grid_points(space, conditions) == [
        {"a": "x"},
        {"c": 1, "a": "y", "b": True},
        {"c": 2, "a": "y", "b": True},
        {"a": "y", "b": False},
    ]


def test_random_draws_only_active_keys_deterministically():
    space = {**METHODS, "train.lr": FloatRange(1e-4, 1e-2, log=True)}
    a = _drain(RandomSearch(space, trials=60, seed=3, conditions=IF))
    assert a == _drain(RandomSearch(space, trials=60, seed=3, conditions=IF))
    for s in a:
        method = s.params["prune.method"]
        assert ("prune.nm" in s.params) == (method == "nm")
        assert ("prune.drop_fraction" in s.params) == (method == "rigl")
        assert ("prune.distribution" in s.params) == (method != "nm")
    assert {s.params["prune.method"] for s in a} == {"magnitude", "nm", "rigl"}


@pytest.mark.parametrize(
    "conditions, field, words",
    [
        ((Condition("x", "prune.method", ("nm",)),), "conditions.x", ["not a searched"]),
        ((Condition("prune.nm", "y", ("nm",)),), "conditions.prune.nm.y", ["not a searched"]),
        ((Condition("prune.nm", "train.lr", (1,)),), "conditions.prune.nm.train.lr", ["range"]),
        (
            (Condition("prune.nm", "prune.method", ("set",)),),
            "conditions.prune.nm.prune.method",
            ["never"],
        ),
        (
            (
                Condition("prune.nm", "prune.method", ("nm",)),
                Condition("prune.method", "prune.nm", ("2:4",)),
            ),
            "conditions.prune.method",
            ["cycle"],
        ),
    ],
)
def test_conditions_that_do_not_fit_the_space_name_the_key(conditions, field, words):
    space = {**METHODS, "train.lr": FloatRange(1e-4, 1e-2)}
    with pytest.raises(ConfigError) as info:
        RandomSearch(space, trials=1, seed=0, conditions=conditions)
    assert info.value.field == field, str(info.value)
    assert all(w in str(info.value) for w in words), str(info.value)


START_END = {"s": Categorical((0.0, 0.5, 1.0)), "e": Categorical((0.25, 0.75))}


def test_grid_drops_the_points_that_break_a_constraint():
    rules = Constraints(parse_constraints(["s < e"]))
    points = [s.params for s in _drain(GridSearch(START_END, constraints=rules))]
    assert points == [{"s": 0.0, "e": 0.25}, {"s": 0.0, "e": 0.75}, {"s": 0.5, "e": 0.75}]


def test_random_draws_again_until_the_constraints_hold_and_stays_deterministic():
    space = {"s": FloatRange(0, 1), "e": FloatRange(0, 1)}
    rules = Constraints(parse_constraints(["s < e", "0.1 <= s"]))
    a = _drain(RandomSearch(space, trials=40, seed=1, constraints=rules))
    assert a == _drain(RandomSearch(space, trials=40, seed=1, constraints=rules))
    assert all(0.1 <= s.params["s"] < s.params["e"] for s in a)
    plain = RandomSearch(space, trials=40, seed=1)
    kept = [i for i in range(40) if rules.allow(plain.sample(i))]
    assert kept and all(a[i].params == plain.sample(i) for i in kept)  # first draws unchanged


@pytest.mark.parametrize(
    "build",
    [
        lambda rules: GridSearch(START_END, constraints=rules),
        lambda rules: RandomSearch(
            {"s": FloatRange(0.5, 1), "e": FloatRange(0, 0.4)}, 5, 0, constraints=rules
        ),
    ],
    ids=["grid", "random"],
)
def test_a_constraint_no_config_can_meet_is_an_error_naming_it(build):
    with pytest.raises(ConfigError) as info:
        build(Constraints(parse_constraints(["s > 2"])))
    assert info.value.field == "constraints[0]" and "s > 2" in str(info.value)
    with pytest.raises(ConfigError) as info:  # each can be met, not both
        build(Constraints(parse_constraints(["s > 0.7", "s < e"])))
    assert info.value.field == "constraints[1]", str(info.value)
    assert "together with constraints[0]" in str(info.value)


@pytest.mark.parametrize(
    "text, config, holds",
    [
        ("a < b", {"a": 1, "b": 2}, True),
        ("a <= b", {"a": 2, "b": 2}, True),
        ("a > b", {"a": 2, "b": 2}, False),
        ("a >= 2", {"a": 2}, True),
        ("a == 0.5", {"a": 0.5}, True),
        ("a != b", {"a": 1, "b": 1}, False),
        ("0 <= a < b <= 1", {"a": 0.2, "b": 0.9}, True),
        ("0 <= a < b <= 1", {"a": 0.2, "b": 1.5}, False),
        ("a<1e-3", {"a": 1e-4}, True),
        ("a < b", {"a": 1}, False),  # a key the config lacks
        ("a < b", {"a": 1, "b": None}, False),  # None against a number
    ],
)
def test_constraint_operators(text, config, holds):
    assert parse_constraint(text).holds(config) is holds


@pytest.mark.parametrize(
    "text, words",
    [
        ("train.lr = 0.5", "compare two things"),
        ("train.lr <", "cannot read ''"),
        ("train.lr < 1 +", "cannot read '1 +'"),
        ("1 < 2", "at least one trial key"),
        ("train.lrr < 1", "did you mean 'train.lr'"),
    ],
)
def test_a_bad_constraint_is_an_error_naming_its_index(text, words):
    with pytest.raises(ConfigError) as info:
        parse_constraints(["train.lr > 0", text], known=["train.lr", "train.steps"])
    assert info.value.field == "constraints[1]"
    assert words in str(info.value) and text in str(info.value)
