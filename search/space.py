"""The search space: named axes, each a categorical, a float range or an int range.

Strategies see only these types; the sweep file's ``parameters`` block is translated into
them once, by the platform.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Categorical:
    values: tuple[Any, ...]

    def sample(self, rng: random.Random) -> Any:
        return self.values[rng.randrange(len(self.values))]


@dataclass(frozen=True)
class FloatRange:
    low: float
    high: float
    log: bool = False

    def sample(self, rng: random.Random) -> float:
        if self.log:
            return math.exp(rng.uniform(math.log(self.low), math.log(self.high)))
        return rng.uniform(self.low, self.high)


@dataclass(frozen=True)
class IntRange:
    low: int
    high: int
    log: bool = False

    def sample(self, rng: random.Random) -> int:
        if self.log:
            value = math.exp(rng.uniform(math.log(self.low), math.log(self.high + 1)))
            return min(int(value), self.high)
        return rng.randint(self.low, self.high)


Axis = Categorical | FloatRange | IntRange
Space = dict[str, Axis]
