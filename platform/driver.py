"""The sweep driver: asks the strategy, runs trials on Ray, and is the single writer.

Order of a launch (ARCHITECTURE.md, "One sweep, end to end"): everything that can fail on
bad input (the spec, SPX_HOME, the sweep name, what the cluster can place) is checked
before the first row is written; then the sweep row, the MLflow experiment and parent run,
and the trial loop, which keeps at most ``resources.concurrent`` trials in flight.
"""

from __future__ import annotations

import logging
import math
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import ray
from ray.util.queue import Queue
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from spx.errors import ConfigError, NotFoundError
from spx.platform import cluster, lifecycle
from spx.platform.progress import PlainDisplay
from spx.platform.runner import Control, TrialJob, read_journal, submit
from spx.platform.settings import Settings, ensure_home
from spx.platform.spec import SweepSpec, parse_spec, spec_hash, strategy_context, trial_config
from spx.platform.store import Store, SweepRow, SweepStatus, TrialRow, TrialStatus
from spx.platform.tracking import Tracker, sweep_params
from spx.search.base import EarlyStopper, Outcome, Strategy, Suggestion, Value
from spx.search.early_stop import StopRule, build_stopper
from spx.search.strategies import build_strategy
from spx.search.study_storage import study_storage_url

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
class SweepOutcome:
    sweep: SweepRow
    trials: list[TrialRow]
    best: TrialRow | None
    objective: str

    @property
    def failed(self) -> int:
        return sum(t.status == TrialStatus.FAILED for t in self.trials)


@dataclass
class _Running:
    trial: TrialRow
    run_id: str | None
    params: dict[str, Any]
    config: dict[str, Any]
    attempt: int
    logged_step: int = 0
    """Reports up to here are already in MLflow: a retried attempt re-reports them."""


@dataclass
class Driver:
    spec: SweepSpec
    spec_text: str
    settings: Settings
    display: PlainDisplay
    store: Store = field(init=False)
    tracker: Tracker = field(init=False)

    def prepare(self) -> None:
        """Every check that needs no writes: SPX_HOME, the name, the cluster's capacity."""
        ensure_home(self.settings)
        self.store = Store.open(self.settings.store_url)
        try:
            self.store.get_sweep(self.spec.name)
        except NotFoundError:
            pass
        else:
            raise ConfigError(
                "a sweep with this name already exists in the store",
                field="name",
                value=self.spec.name,
            )
        cluster.connect(self.settings.ray_address)
        r = self.spec.resources
        cluster.check_capacity(r.cpus_per_worker, r.gpus_per_worker, r.workers_per_trial)

    def run(self) -> SweepOutcome:
        """Launch a new sweep."""
        self.prepare()
        sweep = self.store.create_sweep(
            self.spec.name,
            task=self.spec.task,
            method=self.spec.method,
            spec_text=self.spec_text,
            spec_hash=spec_hash(self.spec_text),
        )
        self.tracker = Tracker(self.settings.tracking_uri, self.settings.artifacts)
        exp, parent = self._start_tracking(sweep)
        # Re-read: `spx sweep stop` may have come in while MLflow was being set up.
        return self._execute(self.store.get_sweep(sweep.name), exp, parent, done={})

    def resume(self, retry_failed: bool = False) -> SweepOutcome:
        """Continue a sweep whose driver died: finished trials are never run again."""
        ensure_home(self.settings)
        self.store = Store.open(self.settings.store_url)
        sweep = self.store.get_sweep(self.spec.name)
        trials = self.store.trials(sweep.id)
        lifecycle.claim(self.settings, sweep, trials, force=False)
        cluster.connect(self.settings.ray_address)
        self.tracker = Tracker(self.settings.tracking_uri, self.settings.artifacts)
        for dead in lifecycle.settle(self.store, trials, self.spec.retries):
            if dead.failed:  # its retries are spent: keep what it reported, end its run
                lifecycle.replay_journal(self.store, self.settings, sweep, dead.trial)
                self.tracker.set_tags(dead.trial.mlflow_run_id, {"spx.error": dead.error})
                self.tracker.end_run(dead.trial.mlflow_run_id, "FAILED")
        exp, parent = sweep.mlflow_experiment_id, sweep.mlflow_run_id
        if exp is None:
            exp, parent = self._start_tracking(sweep)
        else:
            self.tracker.reopen(parent)
        sweep = replace(sweep, status=SweepStatus.RUNNING)  # resuming ends an old stop request
        skip = {TrialStatus.COMPLETED, TrialStatus.PRUNED}
        if not retry_failed:
            skip.add(TrialStatus.FAILED)
        done = {t.number: t for t in self.store.trials(sweep.id) if t.status in skip}
        return self._execute(sweep, exp, parent, done)

    def _execute(
        self,
        sweep: SweepRow,
        exp: str | None,
        parent: str | None,
        done: dict[int, TrialRow],
    ) -> SweepOutcome:
        """Run the sweep's trials, skipping those in ``done`` (already finished)."""
        requested = sweep.status in lifecycle.STOP_REQUESTS
        self.store.update_sweep(
            sweep.id,
            status=sweep.status if requested else SweepStatus.RUNNING,
            started=True,
            mlflow_experiment_id=exp,
            mlflow_run_id=parent,
        )
        storage = study_storage_url(self.settings.store_url)
        strategy = build_strategy(self.spec.method, strategy_context(self.spec, storage))
        self.display.start(sweep.name, strategy.total)
        lifecycle.record_driver(self.settings, sweep.name)
        status = SweepStatus.FAILED
        try:
            loop = _Loop(self, sweep, strategy, exp, parent)
            loop.done = done
            loop.stopper = self._stopper()
            loop.warm_stopper()
            loop.run()
            status = SweepStatus.STOPPED if loop.stopping else SweepStatus.COMPLETED
        except KeyboardInterrupt:
            status = SweepStatus.STOPPED
            raise
        finally:
            self.display.stop()
            self.store.update_sweep(sweep.id, status=status, finished=True)
            self.tracker.end_run(parent, "FINISHED" if status == "COMPLETED" else "KILLED")
            lifecycle.forget_driver(self.settings, sweep.name)
            if self.tracker.failures:
                log.warning(
                    "%d MLflow calls failed or were skipped; `spx sweep sync %s` copies the "
                    "store into MLflow",
                    self.tracker.failures,
                    sweep.name,
                )
        return self.outcome(sweep.name)

    def _stopper(self) -> EarlyStopper | None:
        rule, target = self.spec.early_stop, self.spec.stop_target()
        if rule is None or target is None:
            return None
        max_steps = None
        if "train.steps" not in self.spec.parameters:
            max_steps = trial_config(self.spec, {}).train.steps
        return build_stopper(StopRule(rule.type), target[1], rule.grace, rule.reduction, max_steps)

    def _start_tracking(self, sweep: SweepRow) -> tuple[str | None, str | None]:
        exp = self.tracker.experiment(self.spec.name)
        if exp is None:
            return None, None
        params = sweep_params(self.spec)
        parent = self.tracker.start_run(exp, self.spec.name, params, tags={"spx.sweep": sweep.name})
        self.tracker.log_text(parent, self.spec_text, "sweep.yaml")
        return exp, parent

    def outcome(self, name: str) -> SweepOutcome:
        return outcome(
            self.store, name, self.spec.objectives[0].metric, self.spec.objectives[0].goal
        )


def outcome(store: Store, name: str, metric: str, goal: str) -> SweepOutcome:
    sweep = store.get_sweep(name)
    trials = store.trials(sweep.id)
    scored = [
        t for t in trials if t.status == TrialStatus.COMPLETED and _value(t, metric) is not None
    ]
    sign = 1.0 if goal == "minimize" else -1.0
    best = min(scored, key=lambda t: sign * _value(t, metric)) if scored else None  # type: ignore[operator]
    return SweepOutcome(sweep, trials, best, metric)


def _objective(spec: SweepSpec, metrics: dict[str, Any] | None) -> Value | None:
    """What the strategy is told: one value, or a tuple for a multi-objective sweep."""
    found = [_metric(metrics, o.metric) for o in spec.objectives]
    values = [v for v in found if v is not None]
    if len(values) < len(found):
        return None
    return values[0] if len(values) == 1 else tuple(values)


def _value(trial: TrialRow, metric: str) -> float | None:
    return _metric(trial.metrics, metric)


def _metric(metrics: dict[str, Any] | None, metric: str) -> float | None:
    value = (metrics or {}).get(metric)
    if value is None or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value)


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text)[:60] or "sweep"


class _Loop:
    """One pass over the strategy's suggestions with bounded concurrency."""

    def __init__(
        self,
        driver: Driver,
        sweep: SweepRow,
        strategy: Strategy,
        exp: str | None,
        parent: str | None,
    ):
        self.d, self.sweep, self.strategy = driver, sweep, strategy
        self.exp, self.parent = exp, parent
        # Pinned beside the driver: a worker node that dies must not take them along.
        here = {"scheduling_strategy": _this_node()}
        self.queue = Queue(actor_options=here)
        self.control = Control.options(**here).remote()  # type: ignore[attr-defined]
        self.stopper: EarlyStopper | None = None
        target = driver.spec.stop_target()
        self.stop_metric = target[0] if target else None
        self.running: dict[ray.ObjectRef, _Running] = {}
        self.by_number: dict[int, _Running] = {}
        self.exhausted = False
        self.folder = checkpoint_folder(driver.settings, sweep)
        self.done: dict[int, TrialRow] = {}
        self.watch = lifecycle.Watch(driver.store, sweep)
        self.stopping = False
        """`spx sweep stop` asked for no new trials (running ones finish)."""
        self.cancelled: set[int] = set()
        """Trials `spx sweep stop --cancel` asked to stop."""
        self.kill_at: float | None = None

    def run(self) -> None:
        try:
            while True:
                self._obey()
                self._fill()
                if not self.running:
                    break
                done, _ = ray.wait(list(self.running), num_returns=1, timeout=_POLL_S)
                self._drain()
                for ref in done:
                    self._finish(ref)
        except BaseException:
            self._abort()
            raise

    def warm_stopper(self) -> None:
        """Resumed sweep: replay the finished trials' curves so the stopper compares with them."""
        if self.stopper is None or self.stop_metric is None:
            return
        for number, trial in sorted(self.done.items()):
            for _, step, _, value in self.d.store.metric_history([trial.id], [self.stop_metric]):
                self.stopper.should_stop(number, step, value)
            self.stopper.finish(number, Outcome(str(trial.status)))

    def _obey(self) -> None:
        """Act on a stop request; a cancelled trial that never reports is killed in the end."""
        request = self.watch.poll(r.trial.id for r in self.running.values())
        if request is not None and not self.stopping:
            self.stopping = True
            log.warning("stop requested: no new trials start; running ones finish")
        if request == SweepStatus.CANCELLING and self.kill_at is None:
            log.warning("cancel requested: running trials stop at their next report")
            self.kill_at = time.monotonic() + _CANCEL_GRACE_S
            for running in self.running.values():
                self.cancelled.add(running.trial.number)
                self.control.stop.remote(running.trial.number)
        if self.kill_at is not None and time.monotonic() > self.kill_at:
            self.kill_at = math.inf
            for ref in self.running:
                ray.cancel(ref, force=True)

    def _fill(self) -> None:
        limit = self.d.spec.resources.concurrent
        while not self.stopping and not self.exhausted and len(self.running) < limit:
            suggestion = self.strategy.ask()
            if suggestion is None:
                self.exhausted = True
                return
            finished = self.done.get(suggestion.number)
            if finished is not None:  # resumed sweep: this trial already ran to its end
                value = _objective(self.d.spec, finished.metrics)
                self.strategy.tell(suggestion.number, value, Outcome(str(finished.status)))
                continue
            self._submit(suggestion)

    def _submit(self, suggestion: Suggestion) -> None:
        spec = self.d.spec
        cfg = trial_config(spec, suggestion.params)
        params = cfg.flat()
        trial = self.d.store.add_trial(self.sweep.id, suggestion.number, params)
        run_id = trial.mlflow_run_id
        if run_id is not None:
            self.d.tracker.reopen(run_id)
        elif self.exp is not None:
            run_id = self.d.tracker.start_run(
                self.exp,
                f"trial-{suggestion.number}",
                params,
                parent=self.parent,
                tags={"spx.sweep": self.sweep.name, "spx.trial": str(suggestion.number)},
            )
            self.d.tracker.log_text(run_id, cfg.model_dump_json(indent=2), "trial_config.json")
        self._start(trial, run_id, suggestion.params, cfg.model_dump())

    def _start(self, trial: TrialRow, run_id: str | None, params: dict, config: dict) -> None:
        spec = self.d.spec
        trial_dir = self.folder / f"trial-{trial.number:05d}"
        logged = self._replay(trial, run_id, trial_dir) if trial.attempt else 0
        attempt = trial.attempt + 1
        self.d.store.update_trial(
            trial.id,
            status=TrialStatus.RUNNING,
            attempt=attempt,
            mlflow_run_id=run_id,
            started=True,
            heartbeat=True,
        )
        r = spec.resources
        job = TrialJob(
            number=trial.number,
            attempt=attempt,
            config=config,
            trial_dir=str(trial_dir),
            data_dir=str(self.d.settings.home / "data"),
            threads=max(1, int(r.cpus_per_worker)),
        )
        ref = submit(
            job, self.queue, self.control, r.cpus_per_worker, r.gpus_per_worker, r.workers_per_trial
        )
        running = _Running(trial, run_id, params, config, attempt, logged)
        self.running[ref] = running
        self.by_number[trial.number] = running

    def _replay(self, trial: TrialRow, run_id: str | None, trial_dir: Path) -> int:
        """Store what an earlier attempt reported but no driver stored; the last stored step."""
        store = self.d.store
        stored = {step for _, step, _, _ in store.metric_history([trial.id])}
        for step, metrics in read_journal(trial_dir):
            if step not in stored:
                rows = [(step, name, float(value)) for name, value in metrics.items()]
                store.upsert_metrics(trial.id, rows)
                self.d.tracker.log_metrics(run_id, rows)
                stored.add(step)
        return max(stored, default=0)

    def _drain(self) -> None:
        size = self.queue.qsize()
        if not size:
            return
        for event in self.queue.get_nowait_batch(size):
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
                self.d.tracker.log_table(running.run_id, event["table"], name)

    def _record(self, running: _Running, step: int, metrics: dict[str, float]) -> None:
        rows = [(step, name, float(value)) for name, value in metrics.items()]
        self.d.store.upsert_metrics(running.trial.id, rows)
        self.d.store.update_trial(running.trial.id, step=step, heartbeat=True)
        if step > running.logged_step:
            self.d.tracker.log_metrics(running.run_id, rows)
            running.logged_step = step
        self.d.display.reported(running.trial.number, step, metrics)
        value = metrics.get(self.stop_metric) if self.stop_metric else None
        if self.stopper is None or value is None:
            return
        if self.stopper.should_stop(running.trial.number, step, float(value)):
            self.control.stop.remote(running.trial.number)

    def _finish(self, ref: ray.ObjectRef) -> None:
        running = self.running.pop(ref)
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
        if pruned is not None:
            self.d.tracker.set_tags(running.run_id, {"spx.status": "PRUNED"})
        if cancelled:
            self.d.tracker.set_tags(running.run_id, {"spx.error": lifecycle.CANCELLED})
        self.d.tracker.end_run(running.run_id, "KILLED" if cancelled else "FINISHED")
        value = _objective(self.d.spec, metrics)
        self.strategy.tell(number, value, Outcome(str(status)))
        if self.stopper is not None:
            self.stopper.finish(number, Outcome(str(status)))
        shown = metrics.get(self.d.spec.objectives[0].metric)
        self.d.display.finished(number, str(status), shown, None)

    def _end(self, running: _Running, status: TrialStatus, error: str) -> None:
        """A trial that returned no result: FAILED, or PRUNED when a cancel killed it."""
        self.d.store.update_trial(running.trial.id, status=status, error=error, finished=True)
        self.d.tracker.set_tags(running.run_id, {"spx.error": error[:5000]})
        self.d.tracker.end_run(running.run_id, "FAILED" if status == "FAILED" else "KILLED")
        self.strategy.tell(running.trial.number, None, Outcome(str(status)))
        if self.stopper is not None:
            self.stopper.finish(running.trial.number, Outcome(str(status)))
        self.d.display.finished(running.trial.number, str(status), None, error)

    def _retry(self, running: _Running, error: str) -> None:
        """The worker died: mark the attempt LOST and run it again from its checkpoint."""
        trial = running.trial
        self.d.store.update_trial(trial.id, status=TrialStatus.LOST, error=error)
        self.d.display.finished(trial.number, "LOST", None, f"{error}; retrying")
        again = replace(trial, attempt=running.attempt)
        self._start(again, running.run_id, running.params, running.config)

    def _abort(self) -> None:
        """Interrupted or crashed: stop what runs and leave nothing marked RUNNING."""
        try:
            self._drain()
        except Exception:  # the queue may be gone with Ray; what was stored stays stored
            log.debug("could not drain the report queue while aborting", exc_info=True)
        for ref, running in list(self.running.items()):
            ray.cancel(ref, force=True)
            # LOST, not FAILED: `spx sweep resume` continues it from its checkpoint.
            self.d.store.update_trial(
                running.trial.id,
                status=TrialStatus.LOST,
                error="interrupted: the sweep was stopped",
            )
            self.d.tracker.end_run(running.run_id, "KILLED")
        self.running.clear()


def _this_node() -> NodeAffinitySchedulingStrategy:
    return NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=False)


def _error_text(exc: BaseException) -> str:
    """The user's error, not Ray's wrapping of it."""
    cause = getattr(exc, "cause", None)
    if isinstance(cause, BaseException):
        return f"{type(cause).__name__}: {cause}"
    text = str(exc).strip().splitlines()
    return text[-1] if text else type(exc).__name__


def launch(
    spec: SweepSpec, spec_text: str, settings: Settings, display: PlainDisplay
) -> SweepOutcome:
    """Run a whole sweep and return its outcome."""
    return Driver(spec, spec_text, settings, display).run()


def resume_sweep(
    name: str,
    settings: Settings,
    make_display: Callable[[SweepSpec], PlainDisplay],
    retry_failed: bool = False,
) -> SweepOutcome:
    """Continue the sweep ``name`` from the store: its spec is the one it was launched with."""
    sweep = Store.open(settings.store_url).get_sweep(name)
    spec = parse_spec(sweep.spec_text, name=sweep.name)
    return Driver(spec, sweep.spec_text, settings, make_display(spec)).resume(retry_failed)


def checkpoint_folder(settings: Settings, sweep: SweepRow) -> Path:
    return settings.checkpoints / f"{sweep.id}-{_slug(sweep.name)}"
