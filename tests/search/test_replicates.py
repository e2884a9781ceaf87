"""Replicates: one config per seed, consecutive numbers, the mean told once per group."""

from __future__ import annotations

from spx.search.base import Outcome, Suggestion, Value
from spx.search.grid import GridSearch
from spx.search.replicates import Replicates, pool
from spx.search.space import Categorical, FloatRange
from spx.search.strategies import StrategyContext, build_strategy


class Recorder:
    """A strategy of three configs that records what it is told."""

    total = 3

    def __init__(self) -> None:
        self.next = 0
        self.told: list[tuple[int, Value | None, Outcome]] = []

    def ask(self) -> Suggestion | None:
        if self.next >= 3:
            return None
        self.next += 1
        return Suggestion(self.next - 1, {"x": self.next - 1})

    def tell(self, number: int, value: Value | None, outcome: Outcome) -> None:
        self.told.append((number, value, outcome))


def test_each_config_runs_once_per_seed_with_consecutive_numbers():
    r = Replicates(Recorder(), seeds=(7, 8))
    asked = []
    while (s := r.ask()) is not None:
        asked.append(s)
    assert r.total == 6
    assert [(s.number, s.group, s.params) for s in asked] == [
        (0, 0, {"x": 0, "train.seed": 7}),
        (1, 0, {"x": 0, "train.seed": 8}),
        (2, 1, {"x": 1, "train.seed": 7}),
        (3, 1, {"x": 1, "train.seed": 8}),
        (4, 2, {"x": 2, "train.seed": 7}),
        (5, 2, {"x": 2, "train.seed": 8}),
    ]


def test_the_mean_is_told_exactly_once_per_group_when_all_are_in():
    inner = Recorder()
    r = Replicates(inner, seeds=(0, 1, 2))
    for _ in range(9):
        r.ask()
    r.tell(0, 1.0, Outcome.COMPLETED)
    r.tell(4, 9.0, Outcome.FAILED)
    r.tell(1, 2.0, Outcome.COMPLETED)
    assert inner.told == []  # group 0 still waits for trial 2
    r.tell(2, 6.0, Outcome.COMPLETED)
    r.tell(2, 6.0, Outcome.COMPLETED)  # told twice (a resumed driver): counted once
    assert inner.told == [(0, 3.0, Outcome.COMPLETED)]
    r.tell(3, None, Outcome.FAILED)
    r.tell(5, None, Outcome.FAILED)
    r.tell(6, 4.0, Outcome.PRUNED)
    r.tell(8, 1.0, Outcome.COMPLETED)
    r.tell(7, None, Outcome.FAILED)
    assert inner.told == [
        (0, 3.0, Outcome.COMPLETED),
        (1, None, Outcome.FAILED),
        (2, 1.0, Outcome.COMPLETED),  # the completed replicate, not the pruned one
    ]


def test_pooling():
    assert pool([(1.0, Outcome.PRUNED), (3.0, Outcome.PRUNED)]) == (2.0, Outcome.PRUNED)
    assert pool([((1.0, 4.0), Outcome.COMPLETED), ((3.0, 2.0), Outcome.COMPLETED)]) == (
        (2.0, 3.0),
        Outcome.COMPLETED,
    )
    assert pool([(float("nan"), Outcome.COMPLETED), (2.0, Outcome.COMPLETED)]) == (
        2.0,
        Outcome.COMPLETED,
    )
    assert pool([(None, Outcome.COMPLETED)]) == (None, Outcome.COMPLETED)


def test_build_strategy_wraps_any_method_and_tpe_learns_from_the_means():
    grid = build_strategy(
        "grid", StrategyContext({"a": Categorical((1, 2))}, 1, 0, replicates=(0, 1, 2))
    )
    assert grid.total == 6
    assert isinstance(grid, Replicates) and isinstance(grid.inner, GridSearch)
    ctx = StrategyContext({"x": FloatRange(0, 1)}, 3, 0, replicates=(0, 1))
    tpe = build_strategy("tpe", ctx)
    while (s := tpe.ask()) is not None:
        tpe.tell(s.number, s.params["x"] + s.params["train.seed"], Outcome.COMPLETED)
    study = tpe.inner.study  # type: ignore[attr-defined]
    assert [round(t.values[0] - t.params["x"], 9) for t in study.trials] == [0.5, 0.5, 0.5]
