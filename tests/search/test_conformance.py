"""Every strategy in the registry passes the same suite (like optuna.testing's samplers).

The suite reads each strategy's flags (registry.py), never its name: which space it gets
(an enumerating one values only, a numeric-only one ranges only), what it must promise
(a known trial count, a seeded prefix, one objective or several, its NAS arms). A newly
registered strategy is picked up by the parametrisation below without an edit here.
"""

from __future__ import annotations

import math

import pytest

from spx.errors import ConfigError
from spx.search.base import Outcome, Strategy
from spx.search.constraints import Constraints, parse_constraints
from spx.search.presets import VARIANT
from spx.search.registry import SearchStrategy
from spx.search.space import Categorical, Condition, Conditions, FloatRange, IntRange, Space, active
from spx.search.strategies import STRATEGIES, StrategyContext, build_strategy, strategy_class

NUMERIC: Space = {
    "train.lr": FloatRange(1e-4, 1e-1, log=True),
    "prune.sparsity": FloatRange(0.0, 0.9),
    "model.width": IntRange(8, 64),
    "model.depth": IntRange(1, 8, log=True),
}
MIXED: Space = {**NUMERIC, "prune.method": Categorical(("none", "magnitude", "rigl"))}
GRID: Space = {
    "prune.sparsity": Categorical((0.5, 0.8, 0.9)),
    "prune": Categorical(({"method": "none"}, {"method": "nm", "nm": "2:4"})),
}
TRIALS = 12

# The same on a conditional space under a constraint. prune.update_every is declared
# before its parent, and hangs below a conditional parent (method -> distribution -> it).
START_END = {
    "prune.schedule.start": FloatRange(0.0, 1.0),
    "prune.schedule.end": FloatRange(0.0, 1.0),
}
COND_MIXED: Space = {
    "prune.update_every": IntRange(10, 100),
    "prune.method": MIXED["prune.method"],
    "train.lr": NUMERIC["train.lr"],
    "prune.distribution": Categorical(("uniform", "erk")),
    "prune.drop_fraction": FloatRange(0.1, 0.5),
    **START_END,
}
COND_MIXED_IF: Conditions = (
    Condition("prune.distribution", "prune.method", ("magnitude", "rigl")),
    Condition("prune.update_every", "prune.distribution", ("erk",)),
    Condition("prune.drop_fraction", "prune.method", ("rigl",)),
)
COND_GRID: Space = {
    "prune.nm": Categorical(("2:4", "1:4")),
    "prune.method": Categorical(("magnitude", "nm")),
    "prune.schedule.start": Categorical((0.0, 0.5)),
    "prune.schedule.end": Categorical((0.25, 0.75)),
}
COND_GRID_IF: Conditions = (Condition("prune.nm", "prune.method", ("nm",)),)
ORDERED = Constraints(parse_constraints(["prune.schedule.start < prune.schedule.end"]))


def space_for(cls: type[SearchStrategy], conditional: bool = False) -> tuple[Space, Conditions]:
    """A small space the flags say the strategy searches (and its conditions)."""
    if cls.enumerates:
        return (COND_GRID, COND_GRID_IF) if conditional else (GRID, ())
    if not cls.categorical:  # numeric only: no categorical parent to hang a condition on
        return ({**NUMERIC, **START_END}, ()) if conditional else (NUMERIC, ())
    return (COND_MIXED, COND_MIXED_IF) if conditional else (MIXED, ())


def make(
    method: str,
    seed: int = 0,
    storage: str | None = None,
    name: str = "s",
    conditional: bool = False,
    trials: int = TRIALS,
) -> Strategy:
    space, conditions = space_for(strategy_class(method), conditional)
    ctx = StrategyContext(
        space,
        trials,
        seed,
        storage_url=storage,
        study_name=name,
        conditions=conditions,
        constraints=ORDERED if conditional else Constraints(),
    )
    return build_strategy(method, ctx)


def score(params: dict) -> float:
    return sum(float(v) for v in params.values() if isinstance(v, int | float))


def declared(method: str, conditional: bool = False) -> tuple[Space, Conditions]:
    """What a strategy may suggest: its space, plus the arms a NAS comparison adds."""
    cls = strategy_class(method)
    space, conditions = space_for(cls, conditional)
    arms = {VARIANT: Categorical(cls.arms)} if cls.arms else {}
    return {**space, **arms}, conditions


def inside(declared: tuple[Space, Conditions], params: dict) -> bool:
    """Every active axis has a value in its range, and no inactive axis has one."""
    space, conditions = declared
    if set(params) != {k for k in space if active(k, params, conditions)}:
        return False
    for key, value in params.items():
        axis = space[key]
        if isinstance(axis, Categorical):
            if value not in axis.values:
                return False
        elif isinstance(axis, IntRange):
            if not (isinstance(value, int) and axis.low <= value <= axis.high):
                return False
        elif not (axis.low <= value <= axis.high and math.isfinite(value)):
            return False
    return True


def drain(strategy: Strategy, sign: float = 1.0) -> list:
    out = []
    while (s := strategy.ask()) is not None:
        out.append(s)
        strategy.tell(s.number, sign * score(s.params), Outcome.COMPLETED)
    return out


def take(strategy: Strategy, n: int) -> list:
    """Up to ``n`` suggestions asked in a row, nothing told."""
    out = []
    while len(out) < n and (s := strategy.ask()) is not None:
        out.append(s)
    return out


def decided(method: str) -> int:
    """How many first trials the flags say the seed alone decides (of TRIALS)."""
    cls = strategy_class(method)
    return min(cls.seeded, TRIALS) if cls.adaptive else TRIALS


@pytest.fixture(params=sorted(STRATEGIES))
def method(request) -> str:
    return request.param


def test_suggests_only_inside_the_space_and_numbers_each_trial_once(method):
    strategy = make(method)
    suggested = drain(strategy)
    assert [s.number for s in suggested] == list(range(len(suggested)))
    assert all(inside(declared(method), s.params) for s in suggested), suggested


def test_runs_as_many_trials_as_its_flags_promise(method):
    strategy = make(method)
    total = strategy.total
    suggested = drain(strategy)
    if strategy_class(method).enumerates:  # the space decides, before anything runs
        assert total == len(suggested) and total == make(method, trials=1).total
        assert drain(make(method, trials=1)) == suggested
    else:
        assert total == TRIALS and len(suggested) == TRIALS


def test_the_seed_decides_what_the_flags_say_whatever_the_results(method):
    """Not adaptive: every trial, told anything or nothing. Adaptive: the ``seeded`` first."""
    first = drain(make(method, seed=5))
    told_otherwise = drain(make(method, seed=5), sign=-1.0)
    n = decided(method)
    asked = take(make(method, seed=5), n)  # as the preview asks: nothing told
    assert first[:n] == told_otherwise[:n] == asked
    if not strategy_class(method).adaptive:
        assert first == told_otherwise


def test_learns_from_failed_and_pruned_trials_without_breaking(method):
    strategy = make(method)
    outcomes = [Outcome.FAILED, Outcome.PRUNED, Outcome.COMPLETED]
    count = 0
    while (s := strategy.ask()) is not None:
        outcome = outcomes[s.number % 3]
        value = score(s.params) if outcome == Outcome.COMPLETED else None
        strategy.tell(s.number, value, outcome)
        count += 1
    assert count == (strategy.total or TRIALS)


@pytest.mark.parametrize("conditional", [False, True], ids=["plain", "conditional"])
def test_survives_a_save_and_restore_of_the_driver(method, conditional, tmp_path):
    """The driver dies with trials 0-3 finished and 4-5 in flight; a new one resumes.

    Conditional: Optuna has also skipped trials that broke the constraint, so spx numbers
    and Optuna numbers differ; the numbers and configs must still come back the same.
    """
    url = f"sqlite:///{tmp_path / 'spx-optuna.db'}"
    first = make(method, storage=url, conditional=conditional)
    asked = take(first, 6)
    for s in asked[:4]:
        first.tell(s.number, score(s.params), Outcome.COMPLETED)
    del first

    again = make(method, storage=url, conditional=conditional)
    replayed = take(again, 6)
    assert replayed == asked  # the same numbers with the same configs
    for s in replayed[:4]:  # what the driver does for trials the store has as finished
        again.tell(s.number, score(s.params), Outcome.COMPLETED)
    for s in replayed[4:]:
        again.tell(s.number, score(s.params), Outcome.COMPLETED)
    rest = drain(again)
    numbers = [s.number for s in asked + rest]
    assert numbers == list(range(again.total or TRIALS))
    assert all(inside(declared(method, conditional), s.params) for s in rest)
    if conditional:
        assert all(ORDERED.allow(s.params) for s in asked + rest)


def test_takes_one_objective_or_several_as_its_flag_says(method):
    space, _ = space_for(strategy_class(method))
    ctx = StrategyContext(space, TRIALS, 0, goals=("maximize", "minimize"))
    if not strategy_class(method).multi_objective:
        with pytest.raises(ConfigError) as info:
            build_strategy(method, ctx)
        assert info.value.field == "objective"
        return
    strategy = build_strategy(method, ctx)
    while (s := strategy.ask()) is not None:
        strategy.tell(s.number, (score(s.params), -score(s.params)), Outcome.COMPLETED)


def test_refuses_the_axes_its_flags_rule_out_naming_them(method):
    cls = strategy_class(method)
    refused: Space = {}
    if cls.enumerates:
        refused = {"train.lr": FloatRange(1e-4, 1e-1)}
    elif not cls.categorical:
        refused = {"prune.method": Categorical(("none", "magnitude"))}
    if not refused:
        build_strategy(method, StrategyContext(MIXED, TRIALS, 0))  # any axis goes
        return
    space, _ = space_for(cls)
    with pytest.raises(ConfigError) as info:
        build_strategy(method, StrategyContext({**space, **refused}, TRIALS, 0))
    assert info.value.field == f"parameters.{next(iter(refused))}", str(info.value)


def test_a_nas_comparison_runs_its_arms_side_by_side_at_every_point(method):
    arms = strategy_class(method).arms
    if not arms:
        return
    variants = [s.params[VARIANT] for s in drain(make(method))]
    assert variants == list(arms) * (len(variants) // len(arms))
    with pytest.raises(ConfigError) as info:  # its own axis cannot be taken twice
        build_strategy(method, StrategyContext({VARIANT: Categorical((1,))}, TRIALS, 0))
    assert info.value.field == f"parameters.{VARIANT}"


def test_honours_conditions_and_constraints(method):
    strategy = make(method, conditional=True)
    suggested = drain(strategy)
    assert [s.number for s in suggested] == list(range(len(suggested)))
    assert len(suggested) == (strategy.total or TRIALS)
    assert all(inside(declared(method, True), s.params) for s in suggested), suggested
    assert all(ORDERED.allow(s.params) for s in suggested), suggested
    if not strategy_class(method).adaptive:  # both branches of a condition show up
        space, conditions = declared(method, True)
        for key in {c.key for c in conditions}:
            with_key = [key in s.params for s in suggested]
            assert any(with_key) and not all(with_key), key


def test_the_seed_decides_as_much_on_a_conditional_space(method):
    n = decided(method)
    first = drain(make(method, seed=5, conditional=True))
    assert first[:n] == drain(make(method, seed=5, conditional=True), sign=-1.0)[:n]
