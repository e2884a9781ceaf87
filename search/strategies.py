"""The registry of search methods a sweep's ``method:`` may name.

>>> sorted(STRATEGIES)
['grid', 'random']
"""

from __future__ import annotations

from collections.abc import Callable

from spx.search.base import Strategy
from spx.search.grid import GridSearch
from spx.search.random_search import RandomSearch
from spx.search.space import Space

Factory = Callable[[Space, int, int], Strategy]
"""(space, trials, seed) -> strategy"""

STRATEGIES: dict[str, Factory] = {}


def register(name: str, factory: Factory) -> None:
    STRATEGIES[name] = factory


def build_strategy(method: str, space: Space, trials: int, seed: int) -> Strategy:
    if method not in STRATEGIES:
        raise KeyError(f"unknown method {method!r}; choose one of {sorted(STRATEGIES)}")
    return STRATEGIES[method](space, trials, seed)


register("grid", lambda space, trials, seed: GridSearch(space))
register("random", lambda space, trials, seed: RandomSearch(space, trials, seed))
