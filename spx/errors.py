"""One exception hierarchy for spx. The CLI maps each class to an exit code."""

from __future__ import annotations

import re
from typing import Any

ECHO_CHARS = 200
"""How much of a bad value an error message echoes (a hostile file can hold gigabytes)."""
_LONG_RUN = re.compile(rf"\S{{{ECHO_CHARS + 1},}}")


class SpxError(Exception):
    """Base class of every error spx raises on purpose."""

    exit_code = 1


class ConfigError(SpxError):
    """Bad input: a sweep file, a flag or a trial key. Exit code 2.

    ``field`` is the dotted path of the offending value (``parameters.train.lr.min``);
    the message always echoes the value so the user sees what was read, cut to about
    ECHO_CHARS characters (as is any longer run of text, such as a pasted name, that the
    message or the field quotes).
    """

    exit_code = 2

    def __init__(self, message: str, field: str | None = None, value: Any = ...):
        self.field = field
        self.value = value
        self.reason = message
        """The message alone, without the field and the value (to re-raise elsewhere)."""
        parts = []
        if field:
            parts.append(f"{_cut_runs(field)}: ")
        parts.append(_cut_runs(message))
        if value is not ...:
            parts.append(f" (got {short_repr(value)})")
        super().__init__("".join(parts))


def _cut_runs(text: str) -> str:
    return _LONG_RUN.sub(lambda m: m.group()[: ECHO_CHARS - 1] + "…", text)


def short_repr(value: Any, limit: int = ECHO_CHARS) -> str:
    """``repr(value)`` cut to ``limit`` characters, built without the whole repr.

    The same text as ``repr`` when that fits; otherwise its start and an ellipsis. It stops
    walking a container once the limit is reached, so a value whose repr would take
    gigabytes (YAML aliases share one list many times over) costs no more than a short one.

    >>> short_repr([1, "a", {"b": (2,)}])
    "[1, 'a', {'b': (2,)}]"
    >>> short_repr([[0, 1] * 10**6] * 10**6, limit=20)
    '[[0, 1, 0, 1, 0, 1,…'
    """
    out: list[str] = []
    _emit(value, out, [limit + 1], set())
    text = "".join(out)
    return text if len(text) <= limit else text[: limit - 1] + "…"


_BRACKETS: dict[type, tuple[str, str]] = {
    list: ("[", "]"),
    tuple: ("(", ")"),
    set: ("{", "}"),
    frozenset: ("frozenset({", "})"),
}


def _emit(value: Any, out: list[str], budget: list[int], seen: set[int]) -> None:
    """Append ``repr(value)`` to ``out`` until ``budget[0]`` characters are spent."""
    if budget[0] <= 0:
        return
    kind = type(value)
    if kind in (dict, *_BRACKETS) and id(value) in seen:
        _put("{...}" if kind is dict else "[...]", out, budget)  # a cycle, as repr writes it
        return
    if kind is dict or (kind in _BRACKETS and value):
        seen.add(id(value))
        opening, closing = ("{", "}") if kind is dict else _BRACKETS[kind]
        _put(opening, out, budget)
        items = value.items() if kind is dict else value
        for i, item in enumerate(items):
            if budget[0] <= 0:
                break
            if i:
                _put(", ", out, budget)
            if kind is dict:
                _emit(item[0], out, budget, seen)
                _put(": ", out, budget)
                item = item[1]
            _emit(item, out, budget, seen)
        _put("," if kind is tuple and len(value) == 1 else "", out, budget)
        _put(closing, out, budget)
        seen.discard(id(value))
    elif kind is str:
        _put(repr(value[: budget[0]]) if len(value) > budget[0] else repr(value), out, budget)
    elif kind is int and value.bit_length() > 4096:  # repr of a huge int is slow (or refused)
        _put(f"<an integer of {value.bit_length()} bits>", out, budget)
    else:
        _put(repr(value), out, budget)


def _put(text: str, out: list[str], budget: list[int]) -> None:
    out.append(text[: max(budget[0], 0)])
    budget[0] -= len(text)


class StoreError(SpxError):
    """The results store could not be opened, migrated or written."""


class ConstantInputError(ConfigError):
    """A fit's input takes a single value in the data, so the law cannot be fitted in it
    (``field`` names the column, the message the number of distinct values). Exit code 2."""


class NotFoundError(SpxError):
    """A named sweep, trial or column does not exist. Exit code 2 (bad input)."""

    exit_code = 2


class TrialError(SpxError):
    """A trial failed: it raised, or its loss went NaN."""


class TrialPruned(SpxError):
    """Early termination asked a trial to stop; not a failure. Carries where it stopped."""

    def __init__(self, step: int, metrics: dict[str, float]):
        super().__init__(f"stopped early at step {step}")
        self.step = step
        self.metrics = metrics


class SweepBusyError(SpxError):
    """A live driver may hold the sweep (or none does, where one is needed). Exit code 1."""


class TrackingError(SpxError):
    """MLflow could not be reached or refused a write where one was required (sync)."""


class ClusterError(SpxError):
    """Ray could not be reached or cannot place what the sweep asks for."""
