"""What a search strategy is: ``ask()`` for the next config, ``tell()`` what it scored.

A strategy never talks to the store, MLflow or Ray; the driver asks, runs, and tells.

>>> from spx.search.space import Categorical
>>> class FirstOnly:
...     def __init__(self): self.asked = False
...     total = 1
...     def ask(self):
...         if self.asked: return None
...         self.asked = True
...         return Suggestion(0, {"prune.sparsity": 0.5})
...     def tell(self, number, value, status): pass
>>> FirstOnly().ask()
Suggestion(number=0, params={'prune.sparsity': 0.5}, group=None)
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Literal, Protocol

Goal = Literal["minimize", "maximize"]
Value = float | tuple[float, ...]
"""An objective value: one float, or one per objective for a multi-objective sweep."""


@dataclass(frozen=True)
class Suggestion:
    number: int
    params: dict[str, Any]
    group: int | None = None
    """Trials with the same group run one config (replicates with different seeds)."""


class Outcome(StrEnum):
    COMPLETED = "COMPLETED"
    PRUNED = "PRUNED"
    FAILED = "FAILED"


class EarlyStopper(Protocol):
    """Answers one question about a running trial: should it stop now?

    ``finish`` tells it a trial ended, so later answers can compare against it.
    """

    def should_stop(self, number: int, step: int, value: float) -> bool: ...

    def finish(self, number: int, outcome: Outcome) -> None: ...


class Strategy(Protocol):
    total: int | None
    """How many trials the strategy will suggest, when it knows."""

    def ask(self) -> Suggestion | None:
        """The next trial to run, or None when the strategy is done.

        A strategy rebuilt for a resumed sweep suggests the same numbers again from 0 (with
        the same configs where it can); the driver tells it those that already finished.
        """
        ...

    def tell(self, number: int, value: Value | None, outcome: Outcome) -> None:
        """The objective value of a finished trial (None when it has none)."""
        ...
