"""The sweep driver: asks the strategy, runs trials on Ray, and is the single writer.

Order of a launch (ARCHITECTURE.md, "One sweep, end to end"): everything that can fail on
bad input (the spec, SPX_HOME, the sweep name, what the cluster can place) is checked
before the first row is written; then the sweep row, the MLflow experiment and parent run,
and the trial loop (platform/scheduler.py), which keeps at most ``resources.concurrent``
trials in flight.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from spx.errors import ConfigError, NotFoundError
from spx.platform import cluster, lifecycle
from spx.platform.progress import PlainDisplay
from spx.platform.runner import warm_up
from spx.platform.scheduler import Scheduler, metric_value
from spx.platform.settings import Settings, ensure_home
from spx.platform.spec import SweepSpec, parse_spec, spec_hash, strategy_context, trial_config
from spx.platform.store import Store, SweepRow, SweepStatus, TrialRow, TrialStatus
from spx.platform.tracking import Tracker, sweep_params
from spx.search.base import EarlyStopper
from spx.search.early_stop import StopRule, build_stopper
from spx.search.strategies import build_strategy
from spx.search.study_storage import study_storage_url

log = logging.getLogger("spx.driver")


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
        self._warm_up()

    def _warm_up(self) -> None:
        """Worker processes start importing while the driver sets up MLflow (runner.warm_up);
        a multi-worker trial starts its own processes, so it gains nothing from this."""
        r = self.spec.resources
        if r.workers_per_trial == 1:
            data = self.settings.home / "data"
            warm_up(r.concurrent, r.cpus_per_worker, r.gpus_per_worker, self.spec.task, data)

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
        self._warm_up()
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
            folder = checkpoint_folder(self.settings, sweep)
            trials = Scheduler(self, sweep, strategy, exp, parent, done, self._stopper(), folder)
            trials.run()
            status = SweepStatus.STOPPED if trials.stopping else SweepStatus.COMPLETED
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


def _value(trial: TrialRow, metric: str) -> float | None:
    return metric_value(trial.metrics, metric)


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text)[:60] or "sweep"


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
