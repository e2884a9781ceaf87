"""The search space: named axes, each a categorical, a float range or an int range.

Strategies see only these types; the sweep file's ``parameters`` and ``conditions`` blocks
are translated into them once, by the platform. A :class:`Condition` makes an axis
conditional: it is searched only while a categorical parent takes certain values, and is
absent from the configs where it is not (the trial keeps the fixed value or the default).

>>> space = {"method": Categorical(("magnitude", "nm")), "nm": Categorical(("2:4", "1:4"))}
>>> grid_points(space, (Condition("nm", "method", ("nm",)),))  # doctest: +NORMALIZE_WHITESPACE
[{'method': 'magnitude'}, {'method': 'nm', 'nm': '2:4'}, {'method': 'nm', 'nm': '1:4'}]
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from spx.errors import ConfigError


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


@dataclass(frozen=True)
class Condition:
    """Search ``key`` only while the categorical axis ``parent`` takes one of ``values``.

    Several conditions on one key must all hold; a key whose parent is inactive is inactive.
    """

    key: str
    parent: str
    values: tuple[Any, ...]


Conditions = tuple[Condition, ...]


def active(key: str, params: dict[str, Any], conditions: Conditions) -> bool:
    """Whether ``key`` is searched, given the values its parents took in ``params``."""
    return all(
        c.parent in params and params[c.parent] in c.values for c in conditions if c.key == key
    )


def search_order(space: Mapping[str, Axis], conditions: Conditions) -> list[str]:
    """The axes with every parent before its children (else the space's order).

    Raises ConfigError naming ``conditions.<key>`` for a condition that does not fit the
    space: an unknown key or parent, a parent that is no categorical, a value it never
    takes, or a cycle.
    """
    for c in conditions:
        _check_condition(space, c)
    parents = {k: {c.parent for c in conditions if c.key == k} for k in space}
    order: list[str] = []
    while len(order) < len(space):
        ready = [k for k in space if k not in order and parents[k] <= set(order)]
        if not ready:
            stuck = [k for k in space if k not in order]
            raise ConfigError(
                f"the conditions form a cycle among {', '.join(stuck)}",
                field=f"conditions.{stuck[0]}",
            )
        order.append(ready[0])
    return order


def draw(space: Space, conditions: Conditions, rng: random.Random) -> dict[str, Any]:
    """One draw of the active axes, parents first; returned in the space's order."""
    params: dict[str, Any] = {}
    for key in search_order(space, conditions):
        if active(key, params, conditions):
            params[key] = space[key].sample(rng)
    return {k: params[k] for k in space if k in params}


def grid_points(space: dict[str, Categorical], conditions: Conditions = ()) -> list[dict[str, Any]]:
    """Every combination of the active axes' values: a union of grids, each config once.

    Without conditions this is the product of the axes, the last axis varying fastest.
    """
    points: list[dict[str, Any]] = [{}]
    for key in search_order(space, conditions):
        grown: list[dict[str, Any]] = []
        for p in points:
            if active(key, p, conditions):
                grown.extend({**p, key: v} for v in space[key].values)
            else:
                grown.append(p)
        points = grown
    return [{k: p[k] for k in space if k in p} for p in points]


def grid_size(
    space: Mapping[str, Categorical], conditions: Conditions = (), cap: int | None = None
) -> tuple[int, bool]:
    """How many points :func:`grid_points` returns, counted without building them.

    Returns ``(count, exact)``. Only the parents' values are enumerated (a state per
    combination of them, with the number of points it stands for); when there are more
    than ``cap`` such states the count stops, and is a lower bound above ``cap``.

    >>> space = {"m": Categorical(("a", "nm")), "nm": Categorical((1, 2, 3))}
    >>> space["x"] = Categorical((0, 1))
    >>> grid_size(space, (Condition("nm", "m", ("nm",)),))
    (8, True)
    >>> grid_size({f"k{i}": Categorical(tuple(range(10))) for i in range(30)})
    (1000000000000000000000000000000, True)
    """
    parents = {c.parent for c in conditions}
    states: dict[tuple[tuple[str, int], ...], int] = {(): 1}  # parents' value indices -> points
    for key in search_order(space, conditions):
        values = space[key].values
        grown: dict[tuple[tuple[str, int], ...], int] = {}
        for state, count in states.items():
            taken = {k: space[k].values[i] for k, i in state}
            if not active(key, taken, conditions):
                branches = [(state, count)]
            elif key in parents:
                branches = [((*state, (key, i)), count) for i in range(len(values))]
            else:
                branches = [(state, count * len(values))]
            for new, n in branches:
                grown[new] = grown.get(new, 0) + n
        states = grown
        if cap is not None and len(states) > cap:
            return max(sum(states.values()), cap + 1), False
    return sum(states.values()), True


def _check_condition(space: Mapping[str, Axis], c: Condition) -> None:
    where = f"conditions.{c.key}"
    if c.key not in space:
        raise ConfigError(f"{c.key} is not a searched parameter", field=where)
    parent = space.get(c.parent)
    if parent is None:
        raise ConfigError(f"{c.parent} is not a searched parameter", field=f"{where}.{c.parent}")
    if not isinstance(parent, Categorical):
        raise ConfigError(
            f"{c.parent} must be a parameter with values, not a min/max range",
            field=f"{where}.{c.parent}",
        )
    if not c.values:
        raise ConfigError("name at least one value", field=f"{where}.{c.parent}", value=[])
    for value in c.values:
        if value not in parent.values:
            raise ConfigError(
                f"{c.parent} never takes this value (its values: {list(parent.values)})",
                field=f"{where}.{c.parent}",
                value=value,
            )
