"""No trial starts once a stop request is in the store (`spx sweep stop --wait` saw one more).

The driver reads its sweep row for a stop request at most every second (lifecycle.Watch);
a trial that ends within that second used to have its slot refilled before the request was
read. A pure unit test of the slot thread's decision, on a real SQLite store: Ray is not
started (no trial is submitted, which is what it asserts).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace

from spx.platform import lifecycle
from spx.platform.scheduler import Scheduler
from spx.platform.store import Store
from spx.search.base import Suggestion


def _slot_thread(store: Store, sweep) -> tuple[Scheduler, list[Suggestion]]:
    """A scheduler with two free slots whose strategy always has a next trial."""
    sched = Scheduler.__new__(Scheduler)
    spec = SimpleNamespace(resources=SimpleNamespace(concurrent=2))
    sched.d = SimpleNamespace(spec=spec, store=store)  # type: ignore[assignment]
    sched.sweep, sched.running, sched.ahead, sched.kill_at = sweep, {}, None, None
    sched.stopping, sched.exhausted, sched.cancelled = False, False, set()
    sched.books = ThreadPoolExecutor(max_workers=1)
    sched.watch = lifecycle.Watch(store, sweep)
    submitted: list[Suggestion] = []
    numbers = iter(range(100))
    sched._next = lambda: Suggestion(next(numbers), {})  # type: ignore[method-assign]

    def submit(suggestion: Suggestion) -> None:  # the trial now holds a slot
        submitted.append(suggestion)
        sched.running[suggestion.number] = suggestion  # type: ignore[index]

    sched._submit = submit  # type: ignore[method-assign]
    return sched, submitted


def test_a_stop_requested_between_two_polls_starts_no_trial(tmp_path):
    with Store.open(f"sqlite:///{tmp_path / 'spx.db'}") as store:
        sweep = store.create_sweep("s", task="t", method="grid", spec_text="", spec_hash="h")
        sched, submitted = _slot_thread(store, sweep)
        sched.watch.poll([])  # the driver's last read of the row: no request yet
        store.request_stop("s")  # `spx sweep stop s`, within the next second
        sched._obey()  # a trial just ended: the loop turns
        sched._fill()
        sched.books.shutdown()
        assert submitted == []
        assert sched.stopping


def test_without_a_stop_request_free_slots_fill(tmp_path):
    with Store.open(f"sqlite:///{tmp_path / 'spx.db'}") as store:
        sweep = store.create_sweep("s", task="t", method="grid", spec_text="", spec_hash="h")
        sched, submitted = _slot_thread(store, sweep)
        sched._obey()
        sched._fill()
        sched.books.shutdown()
        assert [s.number for s in submitted] == [0, 1]
