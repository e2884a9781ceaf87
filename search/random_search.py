"""Random search: trial i is drawn from its own RNG seeded by (seed, i).

So trial i's config depends only on the sweep seed and i, never on what ran before or how
many run at once.

>>> from spx.search.space import FloatRange
>>> a = RandomSearch({"lr": FloatRange(1e-4, 1e-2, log=True)}, trials=3, seed=7)
>>> b = RandomSearch({"lr": FloatRange(1e-4, 1e-2, log=True)}, trials=3, seed=7)
>>> a.ask() == b.ask()
True
"""

from __future__ import annotations

import random

from spx.search.base import Outcome, Suggestion, Value
from spx.search.space import Space


class RandomSearch:
    def __init__(self, space: Space, trials: int, seed: int):
        self.space = space
        self.total: int | None = trials
        self.seed = seed
        self.next = 0

    def sample(self, number: int) -> dict:
        rng = random.Random(f"spx-random:{self.seed}:{number}")
        return {name: axis.sample(rng) for name, axis in self.space.items()}

    def ask(self) -> Suggestion | None:
        if self.total is not None and self.next >= self.total:
            return None
        suggestion = Suggestion(self.next, self.sample(self.next))
        self.next += 1
        return suggestion

    def tell(self, number: int, value: Value | None, outcome: Outcome) -> None:
        """Random search does not learn."""
