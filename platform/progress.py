"""Live progress of a sweep: a rich panel on a terminal, plain lines everywhere else."""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from typing import Any, Protocol

from rich.console import Console, Group
from rich.live import Live
from rich.markup import escape
from rich.table import Table


class Display(Protocol):
    def start(self, name: str, total: int | None, ended: dict[int, str] | None = None) -> None: ...
    def started(self, number: int, params: dict[str, Any]) -> None: ...
    def reported(self, number: int, step: int, metrics: dict[str, float]) -> None: ...
    def finished(
        self, number: int, status: str, value: float | None, error: str | None
    ) -> None: ...
    def stop(self) -> None: ...


FINAL = frozenset({"COMPLETED", "PRUNED", "FAILED"})
"""The states a trial ends in; a LOST attempt is retried, so its trial is not done yet."""


@dataclass
class _Tally:
    metric: str
    goal: str
    total: int | None = None
    started_at: float = field(default_factory=time.monotonic)
    running: dict[int, tuple[int, float | None]] = field(default_factory=dict)
    ended: dict[int, str] = field(default_factory=dict)
    """Each trial's latest end (one entry per trial, however many attempts it took)."""
    best: tuple[int, float] | None = None
    durations: list[float] = field(default_factory=list)
    begun: dict[int, float] = field(default_factory=dict)
    duration_total: float = 0.0
    final: int = 0
    """How many entries of ``ended`` are in FINAL (kept as they change: a sweep of 10 000
    trials would otherwise count them all at every trial's end)."""

    def start(self, number: int) -> None:
        self.begun.setdefault(number, time.monotonic())  # a retry keeps its first start
        self.running[number] = (0, None)
        self._end(number, None)  # a LOST attempt runs again

    def _end(self, number: int, status: str | None) -> None:
        """Set (or, with None, clear) trial ``number``'s latest end."""
        self.final -= self.ended.pop(number, None) in FINAL
        if status is not None:
            self.ended[number] = status
            self.final += status in FINAL

    def add_ended(self, ended: dict[int, str]) -> None:
        for number, status in ended.items():
            self._end(number, status)

    def finish(self, number: int, status: str, value: float | None) -> None:
        self.running.pop(number, None)
        self._end(number, status)
        if status in FINAL and number in self.begun:
            self.durations.append(time.monotonic() - self.begun.pop(number))
            self.duration_total += self.durations[-1]
        if status == "COMPLETED" and value is not None and self._better(value):
            self.best = (number, value)

    @property
    def counts(self) -> dict[str, int]:
        """How many trials are in each end state now."""
        out: dict[str, int] = {}
        for status in self.ended.values():
            out[status] = out.get(status, 0) + 1
        return out

    def _better(self, value: float) -> bool:
        if self.best is None:
            return True
        return value < self.best[1] if self.goal == "minimize" else value > self.best[1]

    def done(self) -> int:
        """Trials that ended for good: never more than the sweep has."""
        return self.final

    def eta(self, concurrent: int) -> float | None:
        if self.total is None or not self.durations:
            return None
        left = self.total - self.done()
        mean = self.duration_total / len(self.durations)
        return max(0.0, left * mean / max(1, min(concurrent, left or 1)))


def _fmt_eta(seconds: float | None) -> str:
    if seconds is None:
        return "…"
    return f"{int(seconds // 60)}m{int(seconds % 60):02d}s"


class PlainDisplay:
    """One line per event: for logs, CI and pipes."""

    def __init__(self, metric: str, goal: str, stream: Any = None):
        self.tally = _Tally(metric, goal)
        self.stream = stream or sys.stdout

    def _say(self, text: str) -> None:
        print(text, file=self.stream, flush=True)

    def start(self, name: str, total: int | None, ended: dict[int, str] | None = None) -> None:
        """``ended``: a resumed sweep's trials that already ran to their end (number ->
        status), so its count goes on from them rather than from 0."""
        self.tally.total = total
        self.tally.add_ended(ended or {})
        shown = total if total is not None else "?"
        already = f", {self.tally.done()} already done" if ended else ""
        self._say(f"sweep {name}: {shown} trials{already}")

    def started(self, number: int, params: dict[str, Any]) -> None:
        self.tally.start(number)
        shown = ", ".join(f"{k}={v}" for k, v in params.items())
        self._say(f"trial {number} started  {shown}")

    def reported(self, number: int, step: int, metrics: dict[str, float]) -> None:
        self.tally.running[number] = (step, metrics.get(self.tally.metric))

    def finished(self, number: int, status: str, value: float | None, error: str | None) -> None:
        self.tally.finish(number, status, value)
        t = self.tally
        result = f"{t.metric}={value:.4f}" if value is not None else (error or "")
        total = t.total if t.total is not None else "?"
        self._say(f"trial {number} {status}  {result}  [{t.done()}/{total} done]")

    def stop(self) -> None:
        """Plain lines need no clean-up."""


class LiveDisplay(PlainDisplay):
    """A rich panel: counts by state, the running trials, best so far, ETA."""

    def __init__(self, metric: str, goal: str, concurrent: int, console: Console | None = None):
        super().__init__(metric, goal)
        self.concurrent = concurrent
        self.console = console or Console()
        self.live = Live(console=self.console, refresh_per_second=4, transient=False)
        self.name = ""

    def _say(self, text: str) -> None:
        self.live.update(self._render())

    def start(self, name: str, total: int | None, ended: dict[int, str] | None = None) -> None:
        self.name = name
        self.tally.total = total
        self.tally.add_ended(ended or {})
        self.live.start()
        self.live.update(self._render())

    def finished(self, number: int, status: str, value: float | None, error: str | None) -> None:
        super().finished(number, status, value, error)
        line = f"{self.tally.metric}={value:.4f}" if value is not None else (error or "")[:120]
        self.live.console.print(f"trial {number} [bold]{status}[/]  {escape(line)}")

    def reported(self, number: int, step: int, metrics: dict[str, float]) -> None:
        super().reported(number, step, metrics)
        self.live.update(self._render())

    def _render(self) -> Group:
        t = self.tally
        counts = "  ".join(f"{k.lower()} {v}" for k, v in sorted(t.counts.items())) or "none yet"
        best = f"trial {t.best[0]}: {t.metric}={t.best[1]:.4f}" if t.best else "…"
        head = Table.grid(padding=(0, 2))
        head.add_row(f"[bold]{self.name}[/]", f"{t.done()}/{t.total or '?'} done", counts)
        head.add_row(
            f"running {len(t.running)}", f"best {best}", f"ETA {_fmt_eta(t.eta(self.concurrent))}"
        )
        rows = Table(box=None, show_header=True, header_style="dim")
        rows.add_column("trial")
        rows.add_column("step", justify="right")
        rows.add_column(t.metric, justify="right")
        for number, (step, value) in sorted(t.running.items()):
            rows.add_row(str(number), str(step), "…" if value is None else f"{value:.4f}")
        return Group(head, rows) if t.running else Group(head)

    def stop(self) -> None:
        self.live.stop()


def make_display(metric: str, goal: str, concurrent: int, live: bool | None = None) -> PlainDisplay:
    if live is None:
        live = sys.stdout.isatty()
    return LiveDisplay(metric, goal, concurrent) if live else PlainDisplay(metric, goal)
