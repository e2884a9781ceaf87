"""What ``spx sweep validate`` shows: the first configs launch will run, exactly, or none.

A strategy that is not adaptive (grid, random search, the NAS presets, ...) is decided by
the sweep file and its seed: every trial is known. An adaptive one's first trials are
seeded draws that no result can change (its ``seeded`` flag, registry.py: TPE's
startup trials, NSGA-II's first generation, the first trial of CMA-ES and QMC); they are
asked here the way launch asks them (the same strategy, seed and order, constraints
included) of a study kept in memory, so nothing is written. Later trials depend on
results: they are not shown.

>>> from spx.platform.spec import parse_spec
>>> spec = parse_spec('''
... name: demo
... task: digits-mlp
... method: tpe
... trials: 12
... parameters:
...   train.lr: {min: 1.0e-4, max: 1.0e-2, log: true}
... ''')
>>> p = preview(spec, 3)
>>> len(p.configs), p.known, p.total
(3, 10, 12)
"""

from __future__ import annotations

from dataclasses import dataclass

from spx.platform.spec import SweepSpec, ask_trials, resolve_trials, strategy_context
from spx.search.strategies import build_strategy, strategy_class
from spx.workers.config import TrialConfig


@dataclass(frozen=True)
class Preview:
    configs: list[TrialConfig]
    """The first trials launch will run on a fresh sweep, in order, exactly."""
    known: int
    """How many of the sweep's trials are decided before any result (``total``: all)."""
    total: int
    """The sweep's trial count."""


def preview(spec: SweepSpec, limit: int) -> Preview:
    """The first ``limit`` (or fewer, when fewer are decided) configs launch will run."""
    strategy_cls = strategy_class(spec.method)
    if not strategy_cls.adaptive:
        configs = resolve_trials(spec)
        return Preview(configs[:limit], len(configs), len(configs))
    total = spec.budget() * max(len(spec.seeds()), 1)
    known = min(strategy_cls.seeded * max(len(spec.seeds()), 1), total)
    # In memory (storage_url None): the study launch makes is an RDB one, but a seeded
    # random draw does not depend on where the study lives.
    strategy = build_strategy(spec.method, strategy_context(spec))
    return Preview(ask_trials(spec, strategy, min(limit, known)), known, total)
