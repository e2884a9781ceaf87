"""Grid search: every combination of every axis's values, in a fixed order.

With conditions the grid is a union of grids (a conditional axis multiplies only the points
where it is active; each config appears once); points that break a constraint are dropped.

>>> from spx.search.space import Categorical
>>> g = GridSearch({"a": Categorical((1, 2)), "b": Categorical(("x", "y"))})
>>> g.total, [g.ask().params for _ in range(2)]
(4, [{'a': 1, 'b': 'x'}, {'a': 1, 'b': 'y'}])
"""

from __future__ import annotations

from typing import Any

from spx.search.base import Suggestion
from spx.search.constraints import Constraints
from spx.search.registry import SearchStrategy, StrategyContext, register
from spx.search.space import Categorical, Conditions, Space, grid_points


@register
class GridSearch(SearchStrategy):
    """Every combination of the axes' values, in order (the last axis varying fastest)."""

    name = "grid"
    enumerates = True

    def __init__(
        self, space: Space, conditions: Conditions = (), constraints: Constraints = Constraints()
    ):
        values: dict[str, Categorical] = {}
        for name, axis in space.items():
            if not isinstance(axis, Categorical):
                raise ValueError(f"grid search needs values for {name}, not a range")
            values[name] = axis
        points = grid_points(values, conditions)
        self.points: list[dict[str, Any]] = constraints.keep(
            points, f"all {len(points)} grid points"
        )
        self.total: int | None = len(self.points)
        self.next = 0

    @classmethod
    def from_context(cls, ctx: StrategyContext) -> GridSearch:
        return cls(ctx.space, ctx.conditions, ctx.constraints)

    def ask(self) -> Suggestion | None:
        if self.next >= len(self.points):
            return None
        suggestion = Suggestion(self.next, dict(self.points[self.next]))
        self.next += 1
        return suggestion
