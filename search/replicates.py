"""Replicates: every config a strategy suggests runs once per seed.

The wrapped strategy's trial ``g`` becomes trials ``g*R .. g*R+R-1`` (R seeds), each with
``train.seed`` set and ``group = g``, so numbers stay consecutive and a resumed sweep maps
them the same way. Once all R have finished, the wrapped strategy is told their pooled
result once: the mean over the replicates that completed with a finite value (COMPLETED),
else over those stopped early (PRUNED), else FAILED.

>>> from spx.search.grid import GridSearch
>>> from spx.search.space import Categorical
>>> r = Replicates(GridSearch({"a": Categorical((1, 2))}), seeds=(0, 1))
>>> r.total, [(s.number, s.group, s.params) for s in (r.ask(), r.ask(), r.ask())]
... # doctest: +NORMALIZE_WHITESPACE
(4, [(0, 0, {'a': 1, 'train.seed': 0}), (1, 0, {'a': 1, 'train.seed': 1}),
     (2, 1, {'a': 2, 'train.seed': 0})])
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence

from spx.search.base import Outcome, Strategy, Suggestion, Value

SEED_KEY = "train.seed"


class Replicates:
    def __init__(self, inner: Strategy, seeds: Sequence[int], key: str = SEED_KEY):
        if not seeds:
            raise ValueError("replicates need at least one seed")
        self.inner, self.seeds, self.key = inner, tuple(seeds), key
        self.total: int | None = None if inner.total is None else inner.total * len(self.seeds)
        self.queue: deque[Suggestion] = deque()
        self.results: dict[int, dict[int, tuple[Value | None, Outcome]]] = {}
        self.told: set[int] = set()

    def ask(self) -> Suggestion | None:
        if not self.queue:
            inner = self.inner.ask()
            if inner is None:
                return None
            first = inner.number * len(self.seeds)
            self.queue.extend(
                Suggestion(first + i, {**inner.params, self.key: seed}, group=inner.number)
                for i, seed in enumerate(self.seeds)
            )
        return self.queue.popleft()

    def tell(self, number: int, value: Value | None, outcome: Outcome) -> None:
        group, replicate = divmod(number, len(self.seeds))
        if group in self.told:
            return
        results = self.results.setdefault(group, {})
        results[replicate] = (value, outcome)
        if len(results) == len(self.seeds):
            self.told.add(group)
            del self.results[group]
            self.inner.tell(group, *pool(list(results.values())))


def pool(results: list[tuple[Value | None, Outcome]]) -> tuple[Value | None, Outcome]:
    """One result for a group of replicates (see the module docstring)."""
    for outcome in (Outcome.COMPLETED, Outcome.PRUNED):
        if any(o == outcome for _, o in results):
            values = [v for v, o in results if o == outcome and v is not None and _finite(v)]
            return (_mean(values) if values else None), outcome
    return None, Outcome.FAILED


def _finite(value: Value) -> bool:
    return all(math.isfinite(v) for v in (value if isinstance(value, tuple) else (value,)))


def _mean(values: list[Value]) -> Value:
    if isinstance(values[0], tuple):
        columns = zip(*values, strict=True)  # type: ignore[call-overload]
        return tuple(sum(c) / len(values) for c in columns)
    return sum(values) / len(values)  # type: ignore[arg-type,return-value]
