"""Peak resident-set growth of a block of code, shared by both sides of the benchmark
(standard library only, so .venv-llmc can import it too)."""

from __future__ import annotations

import os
import threading


class PeakRSS:
    """The resident set's peak above its level at ``__enter__``, sampled every 2 ms from
    /proc (torch's allocations are not seen by tracemalloc)."""

    def __enter__(self) -> PeakRSS:
        self.page = os.sysconf("SC_PAGE_SIZE")
        self.start = self.peak = self._rss()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._watch, daemon=True)
        self.thread.start()
        return self

    def _rss(self) -> int:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * self.page

    def _watch(self) -> None:
        while not self.stop.wait(0.002):
            self.peak = max(self.peak, self._rss())

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        self.thread.join()
        self.peak = max(self.peak, self._rss())

    @property
    def delta_mib(self) -> float:
        return (self.peak - self.start) / 2**20
