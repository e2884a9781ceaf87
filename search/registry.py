"""The registry of search strategies: the names a sweep's ``method:`` may take.

A strategy is a class that subclasses :class:`SearchStrategy`, says what it is in class
flags, builds itself from a :class:`StrategyContext` in ``from_context``, and is registered
once with ``@register``. Validation, the preview, the JSON Schema and the conformance suite
read the flags; nothing else keeps a list of names. The shipped strategies register when
:mod:`spx.search.strategies` imports their modules: read the registry through that module.

>>> from spx.search.base import Suggestion
>>> @register
... class FirstPoint(SearchStrategy):
...     '''The first value of every axis, once.'''
...     name = "first-point"
...     enumerates = True
...     def __init__(self, params): self.params, self.total, self.asked = params, 1, False
...     @classmethod
...     def from_context(cls, ctx):
...         return cls({k: axis.values[0] for k, axis in ctx.space.items()})
...     def ask(self):
...         if self.asked: return None
...         self.asked = True
...         return Suggestion(0, self.params)
>>> from spx.search.space import Categorical
>>> ctx = StrategyContext({"a": Categorical((3, 4))}, trials=5, seed=0)
>>> s = strategy_class("first-point").from_context(ctx)
>>> s.total, s.ask(), s.ask()
(1, Suggestion(number=0, params={'a': 3}, group=None), None)
>>> FirstPoint.traits()
'enumerates the space'
>>> del STRATEGIES["first-point"]
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

from spx.errors import ConfigError
from spx.search.base import Goal, Outcome, Strategy, Suggestion, Value
from spx.search.constraints import Constraints
from spx.search.space import Categorical, Conditions, Space


@dataclass(frozen=True)
class StrategyContext:
    """What a strategy is built from: the space (with its conditions and constraints), the
    budget, the seed, the objectives' goals, and where an Optuna study lives."""

    space: Space
    trials: int
    seed: int
    goals: tuple[Goal, ...] = ("minimize",)
    """One per objective, in the sweep file's order."""
    storage_url: str | None = None
    """SQLAlchemy URL of the Optuna study storage (see study_storage.py); None: in memory."""
    study_name: str = "spx"
    conditions: Conditions = ()
    """Axes searched only while a categorical parent takes certain values."""
    constraints: Constraints = Constraints()
    """What every suggested config must meet (judged on the full trial config)."""
    replicates: tuple[int, ...] = ()
    """Seeds each suggested config runs with (``train.seed``); empty: it runs once."""


class SearchStrategy:
    """A registered strategy: its capability flags, its checks, and how it is built.

    An instance is a :class:`~spx.search.base.Strategy` (``total``, ``ask``, ``tell``).
    The flags are promises the conformance suite (tests/search/test_conformance.py) holds
    every registered strategy to.
    """

    name: ClassVar[str]
    """What a sweep file's ``method:`` says."""
    title: ClassVar[str] = ""
    """How messages name it (empty: ``name``)."""
    enumerates: ClassVar[bool] = False
    """It runs a set of configs fixed by the axes' values: ``total`` is known before
    anything runs, the sweep's ``trials`` is ignored, and every axis needs a list of values
    (no min/max range)."""
    adaptive: ClassVar[bool] = False
    """Later suggestions depend on the results told. A strategy that is not adaptive
    suggests the same configs whatever it is told, so validation shows every trial."""
    seeded: ClassVar[int] = 0
    """Adaptive only: how many first trials the seed alone decides, whatever the results
    (validation shows these and says the rest depend on results)."""
    multi_objective: ClassVar[bool] = True
    """It takes one value per objective (one that learns nothing ignores them anyway)."""
    categorical: ClassVar[bool] = True
    """It searches axes given as a list of values (False: numeric ranges only)."""
    arms: ClassVar[tuple[dict[str, Any], ...]] = ()
    """A NAS pipeline comparison: the arms (each sets full dotted keys) that run side by
    side at every point, as a ``variant`` axis. Empty: no NAS pipeline."""

    total: int | None

    @classmethod
    def from_context(cls, ctx: StrategyContext) -> Strategy:
        raise NotImplementedError(f"{cls.__name__} must say how it is built from a context")

    @classmethod
    def check(cls, space: Space, objectives: int) -> None:
        """ConfigError for what this strategy cannot search, judged by its flags; a
        strategy with rules of its own extends this (and calls it)."""
        if cls.enumerates:
            ranged = [k for k, axis in space.items() if not isinstance(axis, Categorical)]
            if ranged:
                raise ConfigError(
                    f"method {cls.name} runs a grid: it needs a list of values, "
                    "not a min/max range",
                    field=f"parameters.{ranged[0]}",
                )
        title = cls.title or cls.name
        if not cls.categorical:
            listed = sorted(k for k, axis in space.items() if isinstance(axis, Categorical))
            if listed:
                others = names(lambda c: c.adaptive and c.categorical)
                raise ConfigError(
                    f"{title} searches numeric ranges only; give min/max for "
                    f"{', '.join(listed)} (or fix them, or use method {_either(others)})",
                    field=f"parameters.{listed[0]}",
                )
        if not cls.multi_objective and objectives > 1:
            others = names(lambda c: c.adaptive and c.multi_objective)
            raise ConfigError(
                f"{title} optimizes one objective; for {objectives} use {_either(others)}",
                field="objective",
            )

    @classmethod
    def traits(cls) -> str:
        """The flags in words, for help texts and the schema."""
        seeded = f"{cls.seeded} seeded trial{'s' if cls.seeded != 1 else ''}"
        words = [
            "enumerates the space" if cls.enumerates else "",
            f"adaptive after {seeded}" if cls.adaptive else "",
            "decided by the seed" if not (cls.adaptive or cls.enumerates) else "",
            "one objective" if not cls.multi_objective else "",
            "numeric ranges only" if not cls.categorical else "",
            f"{len(cls.arms)} NAS arms" if cls.arms else "",
        ]
        return ", ".join(w for w in words if w)

    @classmethod
    def summary(cls) -> str:
        """The first line of the class docstring."""
        doc = (cls.__doc__ or "").strip()
        return doc.splitlines()[0] if doc else ""

    def ask(self) -> Suggestion | None:
        raise NotImplementedError

    def tell(self, number: int, value: Value | None, outcome: Outcome) -> None:
        """A strategy that learns nothing ignores what it is told."""


S = TypeVar("S", bound=type[SearchStrategy])

STRATEGIES: dict[str, type[SearchStrategy]] = {}


def register(cls: S) -> S:
    """Class decorator: make ``cls`` available as ``method: <cls.name>``."""
    name = getattr(cls, "name", None)
    if not isinstance(name, str) or not name:
        raise TypeError(f"{cls.__name__} needs a class attribute `name`")
    if STRATEGIES.get(name, cls) is not cls:
        raise ValueError(f"method {name!r} is already registered by {STRATEGIES[name].__name__}")
    STRATEGIES[name] = cls
    return cls


def strategy_class(method: str) -> type[SearchStrategy]:
    if method not in STRATEGIES:
        raise KeyError(f"unknown method {method!r}; choose one of {sorted(STRATEGIES)}")
    return STRATEGIES[method]


def names(where: Callable[[type[SearchStrategy]], bool] = lambda c: True) -> list[str]:
    """The registered names whose class meets ``where``, sorted."""
    return sorted(name for name, cls in STRATEGIES.items() if where(cls))


def _either(options: list[str]) -> str:
    """``["a", "b", "c"]`` -> ``"a, b or c"``."""
    return f"{', '.join(options[:-1])} or {options[-1]}" if len(options) > 1 else "".join(options)
