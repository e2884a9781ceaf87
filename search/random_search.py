"""Random search: trial i is drawn from its own RNG seeded by (seed, i).

So trial i's config depends only on the sweep seed and i, never on what ran before or how
many run at once. Conditional axes are drawn only where active; a draw that breaks a
constraint is replaced by the next draw from the same RNG (at most ``DRAWS`` of them).

>>> from spx.search.space import FloatRange
>>> a = RandomSearch({"lr": FloatRange(1e-4, 1e-2, log=True)}, trials=3, seed=7)
>>> b = RandomSearch({"lr": FloatRange(1e-4, 1e-2, log=True)}, trials=3, seed=7)
>>> a.ask() == b.ask()
True
"""

from __future__ import annotations

import random
from typing import Any

from spx.errors import ConfigError
from spx.search.base import Suggestion
from spx.search.constraints import DRAWS, Constraints, check_draws, feasible_draw
from spx.search.registry import SearchStrategy, StrategyContext, register
from spx.search.space import Conditions, Space, search_order


@register
class RandomSearch(SearchStrategy):
    """Independent random draws, trial i from its own RNG seeded by (seed, i)."""

    name = "random"

    def __init__(
        self,
        space: Space,
        trials: int,
        seed: int,
        conditions: Conditions = (),
        constraints: Constraints = Constraints(),
    ):
        search_order(space, conditions)  # a ConfigError for conditions that do not fit
        check_draws(space, conditions, constraints, seed)
        self.space, self.conditions, self.constraints = space, conditions, constraints
        self.total: int | None = trials
        self.seed = seed
        self.next = 0

    @classmethod
    def from_context(cls, ctx: StrategyContext) -> RandomSearch:
        return cls(ctx.space, ctx.trials, ctx.seed, ctx.conditions, ctx.constraints)

    def sample(self, number: int) -> dict[str, Any]:
        rng = random.Random(f"spx-random:{self.seed}:{number}")
        params = feasible_draw(self.space, self.conditions, self.constraints, rng)
        if params is None:
            raise ConfigError(
                f"none of {DRAWS} draws for trial {number} meets the constraints; "
                "widen the ranges or loosen the constraints",
                field="constraints",
            )
        return params

    def ask(self) -> Suggestion | None:
        if self.total is not None and self.next >= self.total:
            return None
        suggestion = Suggestion(self.next, self.sample(self.next))
        self.next += 1
        return suggestion
