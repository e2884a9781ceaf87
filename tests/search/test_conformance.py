"""Every strategy in the registry passes the same suite (like optuna.testing's samplers)."""

from __future__ import annotations

import math

import pytest

from spx.search.base import Outcome, Strategy
from spx.search.constraints import Constraints, parse_constraints
from spx.search.nas import ARMS, VARIANT
from spx.search.space import Categorical, Condition, Conditions, FloatRange, IntRange, Space, active
from spx.search.strategies import STRATEGIES, StrategyContext, build_strategy

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
SPACES = {"grid": GRID, "cmaes": NUMERIC, **{m: GRID for m in ARMS}}
DETERMINISTIC = {"grid", "random", *ARMS}
TRIALS = 12

# The same methods on a conditional space under a constraint. prune.update_every is declared
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
CONDITIONAL: dict[str, tuple[Space, Conditions]] = {
    "grid": (COND_GRID, COND_GRID_IF),
    "cmaes": ({**NUMERIC, **START_END}, ()),  # numeric only: no categorical parent
    **{m: (COND_GRID, COND_GRID_IF) for m in ARMS},
}


def space_for(method: str) -> Space:
    return SPACES.get(method, MIXED)


def make(
    method: str,
    seed: int = 0,
    storage: str | None = None,
    name: str = "s",
    conditional: bool = False,
) -> Strategy:
    space, conditions, constraints = space_for(method), (), Constraints()
    if conditional:
        space, conditions = CONDITIONAL.get(method, (COND_MIXED, COND_MIXED_IF))
        constraints = ORDERED
    ctx = StrategyContext(
        space,
        TRIALS,
        seed,
        storage_url=storage,
        study_name=name,
        conditions=conditions,
        constraints=constraints,
    )
    return build_strategy(method, ctx)


def score(params: dict) -> float:
    return sum(float(v) for v in params.values() if isinstance(v, int | float))


def declared(method: str, conditional: bool = False) -> tuple[Space, Conditions]:
    """What a method may suggest: its space, plus the arms a NAS method adds."""
    arms = {VARIANT: Categorical(ARMS[method])} if method in ARMS else {}
    if not conditional:
        return {**space_for(method), **arms}, ()
    space, conditions = CONDITIONAL.get(method, (COND_MIXED, COND_MIXED_IF))
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


def drain(strategy: Strategy) -> list:
    out = []
    while (s := strategy.ask()) is not None:
        out.append(s)
        strategy.tell(s.number, score(s.params), Outcome.COMPLETED)
    return out


@pytest.fixture(params=sorted(STRATEGIES))
def method(request) -> str:
    return request.param


def test_suggests_only_inside_the_space_and_numbers_each_trial_once(method):
    strategy = make(method)
    suggested = drain(strategy)
    assert [s.number for s in suggested] == list(range(len(suggested)))
    assert len(suggested) == (strategy.total or TRIALS)
    assert all(inside(declared(method), s.params) for s in suggested), suggested


def test_is_deterministic_given_a_seed(method):
    if method not in DETERMINISTIC:
        pytest.skip("adaptive samplers promise no determinism across runs")
    assert drain(make(method, seed=5)) == drain(make(method, seed=5))


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
    asked = [first.ask() for _ in range(6)]
    for s in asked[:4]:
        first.tell(s.number, score(s.params), Outcome.COMPLETED)
    del first

    again = make(method, storage=url, conditional=conditional)
    replayed = [again.ask() for _ in range(6)]
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


def test_multi_objective_values_are_accepted(method):
    if method == "cmaes":
        pytest.skip("CMA-ES is single-objective (a ConfigError, tested in test_spec)")
    ctx = StrategyContext(space_for(method), TRIALS, 0, goals=("maximize", "minimize"))
    strategy = build_strategy(method, ctx)
    while (s := strategy.ask()) is not None:
        strategy.tell(s.number, (score(s.params), -score(s.params)), Outcome.COMPLETED)


def test_honours_conditions_and_constraints(method):
    strategy = make(method, conditional=True)
    suggested = drain(strategy)
    assert [s.number for s in suggested] == list(range(len(suggested)))
    assert len(suggested) == (strategy.total or TRIALS)
    assert all(inside(declared(method, True), s.params) for s in suggested), suggested
    assert all(ORDERED.allow(s.params) for s in suggested), suggested
    if method in DETERMINISTIC:  # both branches of a condition show up
        space, conditions = declared(method, True)
        for key in {c.key for c in conditions}:
            with_key = [key in s.params for s in suggested]
            assert any(with_key) and not all(with_key), key


def test_is_deterministic_on_a_conditional_space(method):
    if method not in DETERMINISTIC:
        pytest.skip("adaptive samplers promise no determinism across runs")
    first = drain(make(method, seed=5, conditional=True))
    assert first == drain(make(method, seed=5, conditional=True))
