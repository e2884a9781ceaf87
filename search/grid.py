"""Grid search: every combination of every axis's values, in a fixed order.

>>> from spx.search.space import Categorical
>>> g = GridSearch({"a": Categorical((1, 2)), "b": Categorical(("x", "y"))})
>>> g.total, [g.ask().params for _ in range(2)]
(4, [{'a': 1, 'b': 'x'}, {'a': 1, 'b': 'y'}])
"""

from __future__ import annotations

import itertools
from typing import Any

from spx.search.base import Outcome, Suggestion, Value
from spx.search.space import Categorical, Space


class GridSearch:
    def __init__(self, space: Space):
        for name, axis in space.items():
            if not isinstance(axis, Categorical):
                raise ValueError(f"grid search needs values for {name}, not a range")
        self.names = list(space)
        self.points: list[dict[str, Any]] = [
            dict(zip(self.names, combo, strict=True))
            for combo in itertools.product(*(space[n].values for n in self.names))  # type: ignore[union-attr]
        ]
        self.total: int | None = len(self.points)
        self.next = 0

    def ask(self) -> Suggestion | None:
        if self.next >= len(self.points):
            return None
        suggestion = Suggestion(self.next, dict(self.points[self.next]))
        self.next += 1
        return suggestion

    def tell(self, number: int, value: Value | None, outcome: Outcome) -> None:
        """Grid search does not learn."""
