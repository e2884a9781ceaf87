"""The shipped search strategies, registered, and how a sweep's strategy is built.

Importing this module imports every strategy module below, and each registers its classes
(``@register``, registry.py): the one line a new strategy adds is its import here. A
strategy is built from a :class:`StrategyContext` after its flag checks pass; with
``replicates`` it is wrapped in :class:`~spx.search.replicates.Replicates`.

>>> {"grid", "random", "tpe", "random-nas"} <= set(STRATEGIES)
True
>>> from spx.search.space import Categorical
>>> s = build_strategy("grid", StrategyContext({"a": Categorical((1, 2))}, trials=1, seed=0))
>>> s.total
2
"""

from __future__ import annotations

# The shipped strategies: importing a module registers the strategies it defines.
import spx.search.grid  # noqa: F401
import spx.search.halton  # noqa: F401
import spx.search.presets  # noqa: F401
import spx.search.random_search  # noqa: F401
import spx.search.samplers  # noqa: F401
from spx.search.base import Strategy
from spx.search.registry import (
    STRATEGIES,
    SearchStrategy,
    StrategyContext,
    names,
    register,
    strategy_class,
)
from spx.search.replicates import Replicates

__all__ = [
    "STRATEGIES",
    "SearchStrategy",
    "StrategyContext",
    "build_strategy",
    "names",
    "register",
    "strategy_class",
]


def build_strategy(method: str, ctx: StrategyContext) -> Strategy:
    """The strategy ``method`` names, built from ``ctx`` (KeyError listing the names for
    an unknown one; ConfigError for a space or objectives it cannot search)."""
    cls = strategy_class(method)
    cls.check(ctx.space, len(ctx.goals))
    strategy = cls.from_context(ctx)
    return Replicates(strategy, ctx.replicates) if ctx.replicates else strategy
