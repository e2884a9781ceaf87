"""The registry of search methods a sweep's ``method:`` may name.

A factory builds a strategy from a :class:`StrategyContext`: the space, the budget, the
seed, the objectives' goals, and where an Optuna study lives (None: in memory).

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
from spx.search.grid import GridSearch
from spx.search.nas import ARMS, preset
from spx.search.optuna_search import SAMPLERS, OptunaSearch, check_space
from spx.search.random_search import RandomSearch
from spx.search.space import Space


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


Factory = Callable[[StrategyContext], Strategy]

STRATEGIES: dict[str, Factory] = {}


def register(name: str, factory: Factory) -> None:
    STRATEGIES[name] = factory


def build_strategy(method: str, ctx: StrategyContext) -> Strategy:
    if method not in STRATEGIES:
        raise KeyError(f"unknown method {method!r}; choose one of {sorted(STRATEGIES)}")
    return STRATEGIES[method](ctx)


def _optuna(method: str) -> Factory:
    def factory(ctx: StrategyContext) -> Strategy:
        check_space(method, ctx.space, len(ctx.goals))
        sampler = SAMPLERS[method](ctx.seed)
        return OptunaSearch(
            ctx.space, ctx.trials, sampler, ctx.goals, ctx.storage_url, ctx.study_name
        )

    return factory


register("grid", lambda ctx: GridSearch(ctx.space))
register("random", lambda ctx: RandomSearch(ctx.space, ctx.trials, ctx.seed))
for _name in SAMPLERS:
    register(_name, _optuna(_name))
for _name in ARMS:  # NAS methods: a grid over the sweep's axes times the method's arms
    register(_name, lambda ctx, name=_name: preset(name, ctx.space))
