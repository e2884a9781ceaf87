"""The trial loop: keeps ``resources.concurrent`` trials in flight and records what they do.

Three threads. The *slot* thread (``Scheduler.run``) turns the loop::

    obey stop requests -> settle what trials sent and returned -> fill free slots
    -> ask ahead -> wait for trials

and does only what a free slot waits for: store writes and Ray calls. The *strategy*
thread asks the strategy for trials and tells it results, in order; the *MLflow* thread
(tracking.RunQueue) logs the trial runs. Neither ever holds a slot free: a remote MLflow
server, a slow sampler or an MLflow backlog of thousands of short trials costs the slots
nothing. Their errors surface in the slot thread, which fails the sweep (MLflow's own
failures are only counted: see tracking.py).

A turn handles every trial that is ready at once, and batches its writes across them: what
the trials reported and returned goes to the store in one transaction, the trials that fill
the freed slots in a second (after the strategy was told the results and asked for as many
trials as slots came free, in one call), and each trial's MLflow work since the thread last
looked goes out merged (one ``log_batch`` a run, see RunQueue). So the driver's cost per
trial does not grow with the number of trials, or with the number that end together.

The strategy is asked one trial *ahead*: the suggestion that fills the next free slot is
asked while the slots are full. So a suggestion knows the results of all but the
``concurrent`` most recent trials (asked when a slot frees, it would know all but
``concurrent - 1``); `spx sweep replay` re-runs the stored configs either way.

The store is written by the slot thread first, and committed before anything acts on it (a
trial's row is RUNNING before its task is submitted, COMPLETED with its metrics before its
bookkeeping is handed to the other threads), so a driver that dies with bookkeeping queued
loses nothing the store promised; the MLflow side of it is what ``spx sweep sync``
backfills.
"""

from __future__ import annotations

import logging
import math
import signal
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from spx.errors import SpxError
from spx.platform import lifecycle, paths
from spx.platform.lineage import run_tags
from spx.platform.runner import Inbox, TrialJob, read_journal, submit
from spx.platform.spec import SweepSpec, trial_config
from spx.platform.store import SweepRow, SweepStatus, TrialRow, TrialStatus
from spx.platform.tracking import RunOpen, RunQueue
from spx.search.base import EarlyStopper, Outcome, Strategy, Suggestion, Value

if TYPE_CHECKING:
    from spx.platform.driver import Driver

log = logging.getLogger("spx.driver")
# A trial's process or node went away: the trial itself did nothing wrong, so it may retry.
_CRASHES: tuple[type[BaseException], ...] = (
    ray.exceptions.WorkerCrashedError,
    ray.exceptions.NodeDiedError,
    ray.exceptions.OwnerDiedError,
    ray.exceptions.ObjectLostError,
)
_POLL_S = 0.25
_CANCEL_GRACE_S = 30.0
"""A cancelled trial has this long to reach its next report before its task is killed."""


@dataclass
class _Running:
    trial: TrialRow
    params: dict[str, Any]
    config: dict[str, Any]
    attempt: int
    logged_step: int = 0
    """Reports up to here are already in MLflow: a retried attempt re-reports them."""


class Scheduler:
    """One pass over the strategy's suggestions with bounded concurrency."""

    def __init__(
        self,
        driver: Driver,
        sweep: SweepRow,
        strategy: Strategy,
        exp: str | None,
        parent: str | None,
        done: dict[int, TrialRow],
        stopper: EarlyStopper | None,
        folder: Path,
    ):
        self.d, self.sweep, self.strategy = driver, sweep, strategy
        self.exp, self.parent = exp, parent
        self.done = done
        """Trials of a resumed sweep that already ran to their end."""
        self.known = {t.number for t in driver.store.trials(sweep.id)}
        """Trials an earlier driver of this sweep recorded (none for a new sweep)."""
        self.stopper = stopper
        self.folder = folder
        # Pinned beside the driver: a worker node that dies must not take them along.
        here = {"scheduling_strategy": _this_node()}
        self.inbox = Inbox.options(**here).remote()  # type: ignore[attr-defined]
        target = driver.spec.stop_target()
        self.stop_metric = target[0] if target else None
        self.running: dict[ray.ObjectRef, _Running] = {}
        self.by_number: dict[int, _Running] = {}
        self.trial_ids: dict[int, int] = {}
        """Trial number -> store id, for the run ids the MLflow thread stores."""
        self.starting: list[tuple[_Running, TrialJob]] = []
        """Attempts whose rows this turn writes; their tasks go out once it has committed."""
        self.ending: list[_Running] = []
        """Trials this turn's open transaction ends (marked LOST if it fails)."""
        self.books = ThreadPoolExecutor(max_workers=1, thread_name_prefix="spx-strategy")
        self.tells: list[Callable[[], None]] = []
        """This turn's tells, handed to the strategy thread once the store has them."""
        self.queued: deque[Future[None]] = deque()
        """Tells handed to the strategy thread and not yet seen to have succeeded."""
        self.mlflow = RunQueue(driver.tracker, self._store_run_ids)
        self.ahead: Future[list[Suggestion]] | None = None
        """The suggestion that fills the next free slot, asked while the slots were full."""
        self.exhausted = False
        self.watch = lifecycle.Watch(driver.store, sweep)
        self.stopping = False
        """`spx sweep stop` asked for no new trials (running ones finish)."""
        self.cancelled: set[int] = set()
        """Trials `spx sweep stop --cancel` asked to stop."""
        self.kill_at: float | None = None
        self._warm_stopper()

    def run(self) -> None:
        with _CtrlC() as ctrl_c:
            self._run(ctrl_c)

    def _run(self, ctrl_c: _CtrlC) -> None:
        try:
            done: list[ray.ObjectRef] = []
            while True:
                ctrl_c.check()
                self._obey()
                self._settle(done)
                self._fill()
                self._launch()
                self.mlflow.hand_over()
                self._ask_ahead()
                self._check_books()
                if not self.running:
                    break
                done = self._wait()
            for future in self.queued:
                future.result()  # the last trials' tells, and their errors
            if self.ahead is not None:
                self.ahead.result()
            self.mlflow.close()  # the MLflow backlog, and its errors
        except BaseException as exc:
            self._abort(exc)
            raise
        finally:
            self.books.shutdown(wait=True)

    def _wait(self) -> list[ray.ObjectRef]:
        """The trials that have returned: at least one, unless ``_POLL_S`` passed first."""
        done, rest = ray.wait(list(self.running), num_returns=1, timeout=_POLL_S)
        if done and rest:  # every other one ready too: the turn handles them together
            more, _ = ray.wait(rest, num_returns=len(rest), timeout=0)
            done.extend(more)
        return done

    def _hand_over(self) -> None:
        """After a commit: the turn's tells to the strategy thread, its MLflow work to
        the MLflow thread (bookkeeping runs in order, after what was handed before)."""
        self.mlflow.hand_over()
        if self.tells:
            tells, self.tells = self.tells, []
            self.queued.append(self.books.submit(_run_all, tells))

    def _check_books(self) -> None:
        """Raise what the strategy or the MLflow thread raised; forget what is done."""
        while self.queued and self.queued[0].done():
            self.queued.popleft().result()
        self.mlflow.check()

    def _store_run_ids(self, run_ids: dict[int, str]) -> None:
        """(MLflow thread) the ids of the runs it created, in one transaction."""
        with self.d.store.batch():
            for number, run_id in run_ids.items():
                self.d.store.update_trial(self.trial_ids[number], mlflow_run_id=run_id)

    def _warm_stopper(self) -> None:
        """Resumed sweep: replay the finished trials' curves so the stopper compares with them."""
        if self.stopper is None or self.stop_metric is None:
            return
        for number, trial in sorted(self.done.items()):
            for _, step, _, value in self.d.store.metric_history([trial.id], [self.stop_metric]):
                self.stopper.should_stop(number, step, value)
            self.stopper.finish(number, Outcome(str(trial.status)))

    def _obey(self) -> None:
        """Act on a stop request; a cancelled trial that never reports is killed in the end."""
        with self.d.store.batch():  # the running trials' heartbeats: one statement
            request = self.watch.poll(r.trial.id for r in self.running.values())
        if request is not None and not self.stopping:
            self.stopping = True
            log.warning("stop requested: no new trials start; running ones finish")
        if request == SweepStatus.CANCELLING and self.kill_at is None:
            log.warning("cancel requested: running trials stop at their next report")
            self.kill_at = time.monotonic() + _CANCEL_GRACE_S
            for running in self.running.values():
                self.cancelled.add(running.trial.number)
                self.inbox.stop.remote(running.trial.number)
        if self.kill_at is not None and time.monotonic() > self.kill_at:
            self.kill_at = math.inf
            for ref in self.running:
                ray.cancel(ref, force=True)

    # -- filling slots ---------------------------------------------------------------

    def _fill(self) -> None:
        """Start as many trials as slots are free: their rows in one transaction (their
        tasks go out in ``_launch``, after it committed)."""
        free = self.d.spec.resources.concurrent - len(self.running)
        if self.stopping or self.exhausted or free <= 0:
            return
        suggestions = self._take(free)
        if not suggestions:
            return
        if self._stop_requested_now():
            self.ahead = _resolved(suggestions)  # not started: kept, as if asked ahead
            return
        with self.d.store.batch():
            for suggestion in suggestions:
                self._submit(suggestion)

    def _take(self, wanted: int) -> list[Suggestion]:
        """Up to ``wanted`` suggestions: the one asked ahead, the rest in one call on the
        strategy thread (after the tells handed to it before); fewer when it is done."""
        ahead, self.ahead = self.ahead, None
        taken = ahead.result() if ahead is not None else []
        if ahead is not None and not taken:
            self.exhausted = True
            return []
        if len(taken) < wanted:
            more = self.books.submit(self._next_many, wanted - len(taken)).result()
            if len(more) < wanted - len(taken):
                self.exhausted = True
            taken = taken + more
        if len(taken) > wanted:  # more kept than slots came free: the rest waits
            self.ahead = _resolved(taken[wanted:])
        return taken[:wanted]

    def _stop_requested_now(self) -> bool:
        """Read the sweep row itself before trials start (one query): ``Watch.poll`` reads
        it at most every second, and the suggestions may have taken that long, so a stop
        requested meanwhile would otherwise let more trials start after it."""
        if self.d.store.get_sweep(self.sweep.name).status in lifecycle.STOP_REQUESTS:
            if not self.stopping:
                log.warning("stop requested: no new trials start; running ones finish")
            self.stopping = True
        return self.stopping

    def _ask_ahead(self) -> None:
        if self.ahead is None and not self.exhausted and not self.stopping and self.running:
            self.ahead = self.books.submit(self._next_many, 1)

    def _next_many(self, wanted: int) -> list[Suggestion]:
        """(Strategy thread) up to ``wanted`` suggestions; fewer: the strategy is done."""
        out: list[Suggestion] = []
        while len(out) < wanted and (suggestion := self._next()) is not None:
            out.append(suggestion)
        return out

    def _next(self) -> Suggestion | None:
        """The strategy's next suggestion that has not already run (None: it is done)."""
        while (suggestion := self.strategy.ask()) is not None:
            finished = self.done.get(suggestion.number)
            if finished is None:
                return suggestion
            # A resumed sweep: this trial already ran to its end; the strategy hears so.
            value = objective_value(self.d.spec, finished.metrics)
            self.strategy.tell(suggestion.number, value, Outcome(str(finished.status)))
        return None

    def _submit(self, suggestion: Suggestion) -> None:
        cfg = trial_config(self.d.spec, suggestion.params)
        params = cfg.flat()
        trial = self.d.store.add_trial(self.sweep.id, suggestion.number, params)
        number = trial.number
        self.trial_ids[number] = trial.id
        running = _Running(trial, suggestion.params, cfg.model_dump(), trial.attempt)
        work = self.mlflow.work(number, trial.mlflow_run_id)
        if trial.mlflow_run_id is None and self.exp is not None:
            # The trial's run, a child of the sweep's; created first, whatever else the
            # MLflow thread has for it. An earlier driver may have died between creating
            # this run and storing its id: then it is found by its tags and reused.
            reuse = None
            if self.parent is not None and number in self.known:
                reuse = {"mlflow.parentRunId": self.parent, "spx.trial": str(number)}
            tags = {"spx.sweep": self.sweep.name, "spx.trial": str(number), **run_tags(params)}
            work.open = RunOpen(self.exp, f"trial-{number}", self.parent, tags, reuse)
            work.params.update(params)
            work.texts.append((cfg.model_dump_json(indent=2), "trial_config.json"))
        self._start(running)

    def _start(self, running: _Running) -> None:
        """A new attempt of the trial: RUNNING in the store; its task goes out (``_launch``)
        once that is committed."""
        trial, before = running.trial, running.attempt
        running.attempt += 1
        trial_dir = paths.trial_folder(self.folder, trial.number)
        self.d.store.update_trial(
            trial.id,
            status=TrialStatus.RUNNING,
            attempt=running.attempt,
            started=True,
            heartbeat=True,
        )
        if before:  # a resumed or retried trial: store what no driver stored, reopen its run
            self._replay(running, trial_dir)
            self.mlflow.work(trial.number).reopen = True
        job = TrialJob(
            number=trial.number,
            attempt=running.attempt,
            config=running.config,
            trial_dir=str(trial_dir),
            data_dir=str(self.d.settings.home / "data"),
            threads=max(1, int(self.d.spec.resources.cpus_per_worker)),
        )
        self.starting.append((running, job))

    def _launch(self) -> None:
        """Submit the tasks of the attempts whose RUNNING rows are committed."""
        r = self.d.spec.resources
        while self.starting:
            running, job = self.starting[0]
            ref = submit(job, self.inbox, r.cpus_per_worker, r.gpus_per_worker, r.workers_per_trial)
            self.starting.pop(0)
            self.running[ref] = running
            self.by_number[running.trial.number] = running

    def _replay(self, running: _Running, trial_dir: Path) -> None:
        """Store what an earlier attempt reported but no driver stored (from its journal)."""
        store, trial = self.d.store, running.trial
        stored = {step for _, step, _, _ in store.metric_history([trial.id])}
        for step, metrics in read_journal(trial_dir):
            if step not in stored:
                rows = [(step, name, float(value)) for name, value in metrics.items()]
                store.upsert_metrics(trial.id, rows)
                self.mlflow.metrics(trial.number, rows)
                stored.add(step)
        running.logged_step = max(stored, default=running.logged_step)

    # -- what trials send and return --------------------------------------------------

    def _settle(self, done: list[ray.ObjectRef]) -> None:
        """What the trials sent since the last turn and the ``done`` ones returned: stored in
        one transaction, then handed to the other threads; retried attempts go out."""
        events = ray.get(self.inbox.take.remote())
        if not events and not done:
            return
        with self.d.store.batch():
            self._drain(events)
            for ref in done:
                self._finish(ref)
        self.ending.clear()
        self._launch()
        self._hand_over()

    def _drain(self, events: list[dict[str, Any]] | None = None) -> None:
        if events is None:
            events = ray.get(self.inbox.take.remote())
        for event in events:
            running = self.by_number.get(event["number"])
            if running is None:
                continue
            if event.get("attempt") != running.attempt:
                continue  # a report from an attempt already given up on
            if event["kind"] == "started":
                self.d.store.update_trial(running.trial.id, node_id=event["node"], heartbeat=True)
                self.d.display.started(event["number"], running.params)
            elif event["kind"] == "report":
                self._record(running, event["step"], event["metrics"])
            elif event["kind"] == "table":
                name = f"{event['name']}.json"
                self.mlflow.work(running.trial.number).tables.append((event["table"], name))

    def _record(self, running: _Running, step: int, metrics: dict[str, float]) -> None:
        rows = [(step, name, float(value)) for name, value in metrics.items()]
        self.d.store.upsert_metrics(running.trial.id, rows)
        self.d.store.update_trial(running.trial.id, step=step, heartbeat=True)
        if step > running.logged_step:
            running.logged_step = step
            self.mlflow.metrics(running.trial.number, rows)
        self.d.display.reported(running.trial.number, step, metrics)
        value = metrics.get(self.stop_metric) if self.stop_metric else None
        if self.stopper is None or value is None:
            return
        if self.stopper.should_stop(running.trial.number, step, float(value)):
            self.inbox.stop.remote(running.trial.number)

    def _finish(self, ref: ray.ObjectRef) -> None:
        running = self.running.pop(ref)
        self.ending.append(running)
        number = running.trial.number
        self.by_number.pop(number, None)
        try:
            result = ray.get(ref)
        except Exception as exc:
            if number in self.cancelled:  # killed after the cancel's grace period
                self._end(running, TrialStatus.PRUNED, lifecycle.CANCELLED)
            elif isinstance(exc, _CRASHES) and running.attempt <= self.d.spec.retries:
                self._retry(running, _error_text(exc))
            elif isinstance(exc, _CRASHES):
                error = f"lost after {running.attempt} attempts: {_error_text(exc)}"
                self._end(running, TrialStatus.FAILED, error)
            else:
                self._end(running, TrialStatus.FAILED, _error_text(exc))
            return
        metrics = result["metrics"]
        pruned = result.get("pruned")
        status = TrialStatus.PRUNED if pruned is not None else TrialStatus.COMPLETED
        cancelled = pruned is not None and number in self.cancelled
        self.d.store.update_trial(
            running.trial.id,
            status=status,
            metrics=metrics,
            step=pruned,
            node_id=result["node"],
            error=lifecycle.CANCELLED if cancelled else None,
            finished=True,
        )
        tags = {"spx.status": "PRUNED"} if pruned is not None else {}
        if cancelled:
            tags["spx.error"] = lifecycle.CANCELLED
        value = objective_value(self.d.spec, metrics)
        self._ended(running, status, "KILLED" if cancelled else "FINISHED", tags, value)
        shown = metrics.get(self.d.spec.objectives[0].metric)
        self.d.display.finished(number, str(status), shown, None)

    def _end(self, running: _Running, status: TrialStatus, error: str) -> None:
        """A trial that returned no result: FAILED, or PRUNED when a cancel killed it."""
        self.d.store.update_trial(running.trial.id, status=status, error=error, finished=True)
        run_status = "FAILED" if status == "FAILED" else "KILLED"
        self._ended(running, status, run_status, {"spx.error": error[:5000]}, None)
        self.d.display.finished(running.trial.number, str(status), None, error)

    def _ended(
        self,
        running: _Running,
        status: TrialStatus,
        run_status: str,
        tags: dict[str, str],
        value: Value | None,
    ) -> None:
        """A stored end: the stopper hears now; the MLflow run and the strategy once the
        turn has committed."""
        number, outcome = running.trial.number, Outcome(str(status))
        if self.stopper is not None:
            self.stopper.finish(number, outcome)
        work = self.mlflow.work(number)
        work.tags.update(tags)
        work.end = run_status
        self.tells.append(lambda: self.strategy.tell(number, value, outcome))

    def _retry(self, running: _Running, error: str) -> None:
        """The worker died: mark the attempt LOST and run it again from its checkpoint."""
        self.d.store.update_trial(running.trial.id, status=TrialStatus.LOST, error=error)
        self.d.display.finished(running.trial.number, "LOST", None, f"{error}; retrying")
        self.ending.remove(running)  # it runs on
        self._start(running)

    def _abort(self, cause: BaseException) -> None:
        """Interrupted or crashed: stop what runs and leave nothing marked RUNNING; each
        stopped trial keeps why (a full disk, a dead store) as its error."""
        error = "interrupted: the sweep was stopped"
        if not isinstance(cause, KeyboardInterrupt):
            error = f"the driver failed: {type(cause).__name__}: {cause}"[:5000]
        # What the failed turn asked of MLflow and the strategy rests on writes that may
        # not have been committed: dropped. Its trials are settled below with the rest.
        self.mlflow.discard()
        self.tells.clear()
        try:
            self._drain()
        except Exception:  # the inbox may be gone with Ray; what was stored stays stored
            log.debug("could not drain the inbox while aborting", exc_info=True)
        for ref in self.running:
            ray.cancel(ref, force=True)
        stranded = [*self.running.values(), *self.ending, *(r for r, _ in self.starting)]
        for running in stranded:
            try:  # LOST, not FAILED: `spx sweep resume` continues it from its checkpoint.
                self.d.store.update_trial(running.trial.id, status=TrialStatus.LOST, error=error)
            except SpxError:  # the store may be what failed (a full disk): cancel the rest
                log.debug("could not mark trial %d LOST", running.trial.number, exc_info=True)
            self.mlflow.work(running.trial.number).end = "KILLED"
        self.running.clear()
        self.ending.clear()
        self.starting.clear()
        # Best effort: the store already holds everything this would tell MLflow.
        self.mlflow.hand_over()
        for future in self.queued:
            try:
                future.result()
            except Exception:
                log.debug("bookkeeping failed while aborting", exc_info=True)
        try:
            self.mlflow.close()
        except Exception:
            log.debug("MLflow bookkeeping failed while aborting", exc_info=True)


class _CtrlC:
    """Ctrl-C in the driver, as a request the trial loop acts on at its next turn (within
    ``_POLL_S``) by raising KeyboardInterrupt itself; a second Ctrl-C raises at once.

    The default handler raises wherever the main thread happens to be: between a store
    write and the bookkeeping it queues, inside SQLAlchemy or Ray. A flag makes the
    interrupt land at a turn boundary, where every step the loop took is complete. Only the
    main thread may set a handler, and only Python's default one is replaced: a SIGINT the
    parent process ignores (``cmd &`` in a script) stays ignored.
    """

    def __init__(self) -> None:
        self.requested = False
        self.previous: Any = None

    def __enter__(self) -> _CtrlC:
        owned = signal.getsignal(signal.SIGINT) is signal.default_int_handler
        if owned and threading.current_thread() is threading.main_thread():
            self.previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.previous is not None:
            signal.signal(signal.SIGINT, self.previous)

    def _handle(self, signum: int, frame: Any) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def check(self) -> None:
        if self.requested:
            raise KeyboardInterrupt


def objective_value(spec: SweepSpec, metrics: dict[str, Any] | None) -> Value | None:
    """What the strategy is told: one value, or a tuple for a multi-objective sweep."""
    found = [metric_value(metrics, o.metric) for o in spec.objectives]
    values = [v for v in found if v is not None]
    if len(values) < len(found):
        return None
    return values[0] if len(values) == 1 else tuple(values)


def metric_value(metrics: dict[str, Any] | None, metric: str) -> float | None:
    """A finite number reported as ``metric``, else None."""
    value = (metrics or {}).get(metric)
    if value is None or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value)


def _run_all(calls: list[Callable[[], None]]) -> None:
    for call in calls:
        call()


def _resolved(value: Any) -> Future[Any]:
    future: Future[Any] = Future()
    future.set_result(value)
    return future


def _this_node() -> NodeAffinitySchedulingStrategy:
    return NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=False)


def _error_text(exc: BaseException) -> str:
    """The user's error, not Ray's wrapping of it."""
    cause = getattr(exc, "cause", None)
    if isinstance(cause, BaseException):
        return f"{type(cause).__name__}: {cause}"
    text = str(exc).strip().splitlines()
    return text[-1] if text else type(exc).__name__
