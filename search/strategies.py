"""The registry of search methods a sweep's ``method:`` may name.

A factory builds a strategy from a :class:`StrategyContext`: the space (with its conditions
and constraints), the budget, the seed, the objectives' goals, and where an Optuna study
lives (None: in memory). With ``replicates`` every strategy is wrapped in
:class:`~spx.search.replicates.Replicates`.

>>> sorted(STRATEGIES)
['cmaes', 'dass', 'grid', 'nsga2', 'oto', 'qmc', 'random', 'random-nas', 'tpe']
>>> from spx.search.space import Categorical
>>> s = build_strategy("grid", StrategyContext({"a": Categorical((1, 2))}, trials=1, seed=0))
>>> s.total
2
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from spx.search.base import Goal, Strategy
from spx.search.constraints import Constraints
from spx.search.grid import GridSearch
from spx.search.nas import ARMS, preset
from spx.search.optuna_search import SAMPLERS, OptunaSearch, check_space
from spx.search.random_search import RandomSearch
from spx.search.replicates import Replicates
from spx.search.space import Conditions, Space


@dataclass(frozen=True)
class StrategyContext:
    space: Space
    trials: int
    seed: int
    goals: tuple[Goal, ...] = ("minimize",)
    """One per objective, in the sweep file's order."""
    storage_url: str | None = None
    """SQLAlchemy URL of the Optuna study storage (see study_storage.py); None: in memory."""
    study_name: str = "spx"
    conditions: Conditions = ()
    """Axes searched only while a categorical parent takes certain values."""
    constraints: Constraints = Constraints()
    """What every suggested config must meet (judged on the full trial config)."""
    replicates: tuple[int, ...] = ()
    """Seeds each suggested config runs with (``train.seed``); empty: it runs once."""


Factory = Callable[[StrategyContext], Strategy]

STRATEGIES: dict[str, Factory] = {}


def register(name: str, factory: Factory) -> None:
    STRATEGIES[name] = factory


def build_strategy(method: str, ctx: StrategyContext) -> Strategy:
    if method not in STRATEGIES:
        raise KeyError(f"unknown method {method!r}; choose one of {sorted(STRATEGIES)}")
    strategy = STRATEGIES[method](ctx)
    return Replicates(strategy, ctx.replicates) if ctx.replicates else strategy


def _optuna(method: str) -> Factory:
    def factory(ctx: StrategyContext) -> Strategy:
        check_space(method, ctx.space, len(ctx.goals))
        sampler = SAMPLERS[method](ctx.seed)
        return OptunaSearch(
            ctx.space,
            ctx.trials,
            sampler,
            ctx.goals,
            ctx.storage_url,
            ctx.study_name,
            ctx.conditions,
            ctx.constraints,
            ctx.seed,
        )

    return factory


def _nas(method: str) -> Factory:
    def factory(ctx: StrategyContext) -> Strategy:
        return preset(method, ctx.space, ctx.conditions, ctx.constraints)

    return factory


register("grid", lambda ctx: GridSearch(ctx.space, ctx.conditions, ctx.constraints))
register(
    "random",
    lambda ctx: RandomSearch(ctx.space, ctx.trials, ctx.seed, ctx.conditions, ctx.constraints),
)
for _name in SAMPLERS:
    register(_name, _optuna(_name))
for _name in ARMS:  # NAS methods: a grid over the sweep's axes times the method's arms
    register(_name, _nas(_name))
