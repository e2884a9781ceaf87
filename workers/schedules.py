"""Schedules: when masks change and to what sparsity (ALGORITHMS.md §5, §6), and the LR.

A schedule is a frozen object with two questions, ``sparsity_at(step)`` and
``should_update(step)``; methods never compute their own timing. ``step`` counts optimizer
steps already taken (0 before the first one); a mask update at step t happens after the
t-th backward pass, on its gradient, before its optimizer step (a method whose masks are
drawn at init draws them before the first forward pass), so pruning "at init" is step 0.

>>> s = Cubic(final=0.8, begin=0, end=100, every=10)
>>> round(s.sparsity_at(50), 4), s.sparsity_at(100), s.should_update(20), s.should_update(25)
(0.7, 0.8, True, False)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol

from spx.workers.knobs import ScheduleConfig


class Schedule(Protocol):
    @property
    def final(self) -> float: ...

    def sparsity_at(self, step: int) -> float: ...

    def should_update(self, step: int) -> bool: ...


@dataclass(frozen=True)
class Cubic:
    """Zhu & Gupta: s_t = s_f + (s_i − s_f)(1 − (t − t0)/(t_end − t0))^3, held between updates."""

    final: float
    begin: int
    end: int
    every: int
    initial: float = 0.0

    def sparsity_at(self, step: int) -> float:
        if step < self.begin:
            return self.initial
        if step >= self.end:
            return self.final
        last = self.begin + (step - self.begin) // self.every * self.every
        progress = (last - self.begin) / (self.end - self.begin)
        return self.final + (self.initial - self.final) * (1.0 - progress) ** 3

    def should_update(self, step: int) -> bool:
        if not self.begin <= step <= self.end:
            return False
        return (step - self.begin) % self.every == 0 or step == self.end


@dataclass(frozen=True)
class OneShot:
    """Dense until ``at``, then the final sparsity in one mask update."""

    final: float
    at: int

    def sparsity_at(self, step: int) -> float:
        return self.final if step >= self.at else 0.0

    def should_update(self, step: int) -> bool:
        return step == self.at


@dataclass(frozen=True)
class Constant:
    """The final sparsity from step 0 on (masks fixed at init, or redrawn by the method)."""

    final: float

    def sparsity_at(self, step: int) -> float:
        return self.final

    def should_update(self, step: int) -> bool:
        return step == 0


def build_schedule(cfg: ScheduleConfig, final: float, total_steps: int) -> Schedule:
    """Turn start/end fractions of ``total_steps`` into step numbers.

    The last update happens no later than step ``total_steps - 1`` so the target is
    always reached before training ends.
    """
    last = max(total_steps - 1, 0)
    end = min(round(cfg.end * total_steps), last)
    begin = min(round(cfg.start * total_steps), end)
    if cfg.kind == "constant":
        return Constant(final)
    if cfg.kind == "one-shot" or begin == end:
        return OneShot(final, at=begin)
    return Cubic(final=final, begin=begin, end=end, every=cfg.every)


class LRSettings(Protocol):
    """The ``train.*`` keys the LR schedule reads (``TrainConfig`` has them)."""

    @property
    def steps(self) -> int: ...

    @property
    def lr(self) -> float: ...

    @property
    def lr_schedule(self) -> str: ...


def lr_at(cfg: LRSettings, position: int) -> float:
    """The learning rate at a position of the LR schedule (``train.lr_schedule``).

    >>> from spx.workers.config import TrainConfig
    >>> cfg = TrainConfig(steps=100, lr=0.1, lr_schedule="cosine")
    >>> lr_at(cfg, 0), round(lr_at(cfg, 50), 6), lr_at(cfg, 100)
    (0.1, 0.05, 0.0)
    """
    if cfg.lr_schedule == "cosine":
        progress = min(position, cfg.steps) / cfg.steps
        return cfg.lr * 0.5 * (1.0 + math.cos(math.pi * progress))
    return cfg.lr
