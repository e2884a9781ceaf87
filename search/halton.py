"""Halton search: trial configs from a scrambled Halton sequence (Halton 1960).

Axis d of the space (in the space's order) takes coordinate d of each point: the radical
inverse of the point's index in the d-th prime base, every digit permuted by a random
permutation of that digit position (random digit scrambling, Owen 2017, arXiv 1706.02808),
the permutations drawn from the sweep seed. The first b^k points put exactly one point
in each of the b^k equal slices of the axis in base b, so a budget covers every axis more
evenly than as many random draws. A coordinate maps onto its axis as a random draw's
would: equal slices for a list of values, uniform (or log-uniform) for a range.

Nothing here learns from results, so every trial is known before launch, and trial i
depends only on the seed, the space and the constraints (a resumed sweep gets the same
configs). A conditional axis takes its coordinate only where it is active; a point that
breaks a constraint is skipped for the next point (at most ``DRAWS`` in a row).

>>> from spx.search.space import FloatRange
>>> h = Halton({"x": FloatRange(0, 1)}, trials=8, seed=0)
>>> xs = [h.ask().params["x"] for _ in range(8)]
>>> sorted(int(x * 8) for x in xs)  # one point in each eighth
[0, 1, 2, 3, 4, 5, 6, 7]
"""

from __future__ import annotations

import math
import random
from typing import Any

from spx.errors import ConfigError
from spx.search.base import Suggestion
from spx.search.constraints import DRAWS, Constraints, check_draws
from spx.search.registry import SearchStrategy, StrategyContext, register
from spx.search.space import Axis, Categorical, Conditions, FloatRange, Space, active, search_order


@register
class Halton(SearchStrategy):
    """Scrambled Halton points: an even, quasi-random cover of the space (Halton 1960)."""

    name = "halton"

    def __init__(
        self,
        space: Space,
        trials: int,
        seed: int,
        conditions: Conditions = (),
        constraints: Constraints = Constraints(),
    ):
        self.order = search_order(space, conditions)
        check_draws(space, conditions, constraints, seed)
        rng = random.Random(f"spx-halton:{seed}")
        bases = _primes(len(space))  # axis d in the d-th prime base
        self.coords = {k: _Radical(b, rng) for k, b in zip(space, bases, strict=True)}
        self.space, self.conditions, self.constraints = space, conditions, constraints
        self.total: int | None = trials
        self.next = 0  # the next trial number
        self.index = 0  # the next point of the sequence

    @classmethod
    def from_context(cls, ctx: StrategyContext) -> Halton:
        return cls(ctx.space, ctx.trials, ctx.seed, ctx.conditions, ctx.constraints)

    def point(self, index: int) -> dict[str, Any]:
        """Point ``index`` of the sequence on the active axes, in the space's order."""
        params: dict[str, Any] = {}
        for key in self.order:
            if active(key, params, self.conditions):
                params[key] = _on_axis(self.space[key], self.coords[key].at(index))
        return {k: params[k] for k in self.space if k in params}

    def ask(self) -> Suggestion | None:
        if self.total is not None and self.next >= self.total:
            return None
        for _ in range(DRAWS):
            params = self.point(self.index)
            self.index += 1
            if self.constraints.allow(params):
                self.next += 1
                return Suggestion(self.next - 1, params)
        raise ConfigError(
            f"none of {DRAWS} Halton points in a row for trial {self.next} meets the "
            "constraints; widen the ranges or loosen the constraints",
            field="constraints",
        )


class _Radical:
    """The scrambled radical inverse in one base: index -> [0, 1)."""

    def __init__(self, base: int, rng: random.Random):
        digits = math.ceil(53 / math.log2(base))  # as fine as a float resolves
        self.base = base
        self.perms = [rng.sample(range(base), base) for _ in range(digits)]

    def at(self, index: int) -> float:
        x, scale = 0.0, 1.0
        for perm in self.perms:  # the index's lowest digit becomes x's leading digit
            index, digit = divmod(index, self.base)
            scale /= self.base
            x += perm[digit] * scale
        return x


def _on_axis(axis: Axis, u: float) -> Any:
    if isinstance(axis, Categorical):
        return axis.values[min(int(u * len(axis.values)), len(axis.values) - 1)]
    top = axis.high if isinstance(axis, FloatRange) else axis.high + 1  # int: slice [low, high+1)
    low, high = (math.log(axis.low), math.log(top)) if axis.log else (axis.low, top)
    x = low + u * (high - low)
    x = math.exp(x) if axis.log else x
    if isinstance(axis, FloatRange):
        return min(max(x, axis.low), axis.high)
    return min(max(int(x), axis.low), axis.high)


def _primes(count: int) -> list[int]:
    found: list[int] = []
    n = 2
    while len(found) < count:
        if all(n % p for p in found if p * p <= n):
            found.append(n)
        n += 1
    return found
