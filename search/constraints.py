"""Constraints between trial keys, e.g. ``prune.schedule.start < prune.schedule.end``.

A constraint compares trial keys and numbers with ``<  <=  >  >=  ==  !=``; a chain such as
``0.1 <= prune.schedule.start < prune.schedule.end`` holds when every link holds. A key may
carry a constant factor, ``train.steps == 40 * comm.inner_steps`` (40 outer steps at every
H), and the factor applies to numbers only (a boolean is no number). It is
judged on a trial's *full* config (the sweep's fixed keys, the suggested parameters and the
defaults; :attr:`Constraints.complete` builds it) before the trial is submitted: grid search
drops the points that break one, random search draws again, and the Optuna samplers skip
the trial (see optuna_search.py). A comparison that cannot be made (a key the config lacks,
a number against text) does not hold.

>>> rules = Constraints(parse_constraints(["a < b", "b <= 3"]))
>>> rules.allow({"a": 1, "b": 2}), rules.allow({"a": 2, "b": 2}), rules.allow({"a": 1})
(True, False, False)
>>> paired = Constraints(parse_constraints(["steps == 40 * h"]))
>>> paired.allow({"steps": 600, "h": 15}), paired.allow({"steps": 600, "h": 30})
(True, False)
"""

from __future__ import annotations

import difflib
import operator
import random
import re
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from spx.errors import ConfigError
from spx.search.space import Conditions, Space, draw

OPERATORS: dict[str, Callable[[Any, Any], bool]] = {
    "<=": operator.le,
    ">=": operator.ge,
    "==": operator.eq,
    "!=": operator.ne,
    "<": operator.lt,
    ">": operator.gt,
}
DRAWS = 1000
"""Random draws that judge whether a space with ranges can meet the constraints at all, and
that random search makes for one trial before it gives up."""

_SPLIT = re.compile(r"\s*(<=|>=|==|!=|<|>)\s*")
_NUMBER = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?")
_KEY = re.compile(r"[A-Za-z_][\w.]*")
_SCALED = re.compile(r"(?P<factor>\S+?)\s*\*\s*(?P<key>\S+)")


@dataclass(frozen=True)
class Scaled:
    """``factor * key``: a trial key times a constant."""

    factor: float
    key: str

    def of(self, config: dict[str, Any]) -> Any:
        value = config[self.key]
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise TypeError(f"{self.key} is not a number")
        return self.factor * value


@dataclass(frozen=True)
class Constraint:
    text: str
    operands: tuple[str | float | Scaled, ...]
    """A trial key (str), a number or a scaled key, one more than ``operators``."""
    operators: tuple[str, ...]

    @property
    def keys(self) -> list[str]:
        return [
            o.key if isinstance(o, Scaled) else o
            for o in self.operands
            if isinstance(o, str | Scaled)
        ]

    def holds(self, config: dict[str, Any]) -> bool:
        if any(key not in config for key in self.keys):
            return False
        try:
            values = [_value(o, config) for o in self.operands]
            return all(
                OPERATORS[op](a, b)
                for op, a, b in zip(self.operators, values, values[1:], strict=False)
            )
        except TypeError:  # e.g. None or text against a number
            return False


def parse_constraint(text: str, known: Collection[str] | None = None) -> Constraint:
    """Read ``text``; ``known``: the trial keys it may name (None: any). ValueError if bad."""
    parts = _SPLIT.split(text.strip())
    operands, operators = parts[0::2], parts[1::2]
    if len(operands) < 2:
        raise ValueError(f"compare two things with one of {' '.join(OPERATORS)}")
    read = tuple(_operand(o, known) for o in operands)
    if all(_is_num(o) for o in read):
        raise ValueError("a constraint must name at least one trial key")
    return Constraint(text, read, tuple(operators))


def parse_constraints(
    texts: Sequence[str], known: Collection[str] | None = None
) -> tuple[Constraint, ...]:
    """Every constraint of a sweep; a ConfigError names ``constraints[i]`` and echoes it."""
    out = []
    for i, text in enumerate(texts):
        try:
            out.append(parse_constraint(text, known))
        except ValueError as exc:
            raise ConfigError(str(exc), field=f"constraints[{i}]", value=text) from None
    return tuple(out)


def _is_num(operand: str | float | Scaled) -> bool:
    return isinstance(operand, float)


def _value(operand: str | float | Scaled, config: dict[str, Any]) -> Any:
    if isinstance(operand, Scaled):
        return operand.of(config)
    return config[operand] if isinstance(operand, str) else operand


def _operand(text: str, known: Collection[str] | None) -> str | float | Scaled:
    if _NUMBER.fullmatch(text):
        return float(text)
    scaled = _SCALED.fullmatch(text)
    if scaled and _NUMBER.fullmatch(scaled["factor"]):
        key = _operand(scaled["key"], known)
        if not isinstance(key, str):
            raise ValueError(f"cannot read {text!r}: write a number times a trial key")
        return Scaled(float(scaled["factor"]), key)
    if not _KEY.fullmatch(text):
        raise ValueError(f"cannot read {text!r}: write a trial key or a number")
    if known is not None and text not in known:
        hint = difflib.get_close_matches(text, list(known), n=1)
        raise ValueError(
            f"unknown trial key {text!r}" + (f"; did you mean {hint[0]!r}?" if hint else "")
        )
    return text


def _as_is(params: dict[str, Any]) -> dict[str, Any]:
    return params


@dataclass(frozen=True)
class Constraints:
    """The sweep's constraints and how a suggestion becomes the config they judge."""

    rules: tuple[Constraint, ...] = ()
    complete: Callable[[dict[str, Any]], dict[str, Any]] = _as_is
    """A suggestion's params -> the full trial config as dotted keys (default: the params)."""

    def broken(self, params: dict[str, Any]) -> Constraint | None:
        """The first constraint ``params`` break, or None."""
        if not self.rules:
            return None
        config = self.complete(params)
        return next((rule for rule in self.rules if not rule.holds(config)), None)

    def allow(self, params: dict[str, Any]) -> bool:
        return self.broken(params) is None

    def keep(self, candidates: Iterable[dict[str, Any]], what: str) -> list[dict[str, Any]]:
        """The candidates that meet every constraint, in order.

        If none does, a ConfigError names the constraint that removed the last of them
        (``what`` says what was tried, e.g. "the 12 grid points").
        """
        survivors = list(candidates)
        if not self.rules:
            return survivors
        configs = [self.complete(p) for p in survivors]
        for i, rule in enumerate(self.rules):
            held = [rule.holds(c) for c in configs]
            survivors = [p for p, ok in zip(survivors, held, strict=True) if ok]
            configs = [c for c, ok in zip(configs, held, strict=True) if ok]
            if not survivors:
                before = "constraints[0]" if i == 1 else f"constraints[0..{i - 1}]"
                also = f" together with {before}" if i else ""
                raise ConfigError(
                    f"no config of the space satisfies this constraint{also} ({what} break it)",
                    field=f"constraints[{i}]",
                    value=rule.text,
                )
        return survivors


def check_draws(space: Space, conditions: Conditions, constraints: Constraints, seed: int) -> None:
    """ConfigError naming ``constraints[i]`` when none of ``DRAWS`` seeded draws meets them."""
    if not constraints.rules:
        return
    rng = random.Random(f"spx-feasible:{seed}")
    constraints.keep(
        (draw(space, conditions, rng) for _ in range(DRAWS)), f"all {DRAWS} random draws"
    )


def feasible_draw(
    space: Space, conditions: Conditions, constraints: Constraints, rng: random.Random
) -> dict[str, Any] | None:
    """The first of at most ``DRAWS`` draws from ``rng`` that meets the constraints."""
    for _ in range(DRAWS):
        params = draw(space, conditions, rng)
        if constraints.allow(params):
            return params
    return None
