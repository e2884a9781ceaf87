"""The sweep driver: asks the strategy, runs trials on Ray, and is the single writer.

Order of a launch (ARCHITECTURE.md, "One sweep, end to end"): everything that can fail on
bad input (the spec, SPX_HOME, the sweep name, the tracking URI, what the cluster can place)
and every backend that must open (the store, MLflow) is checked before the first row is
written; then the sweep row, the MLflow experiment and parent run, and the trial loop
(platform/scheduler.py), which keeps at most ``resources.concurrent`` trials in flight.
Backends are first opened under ``homelock.setup_lock``: drivers starting at once on a
fresh SPX_HOME take turns creating MLflow's and Optuna's tables.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from spx.errors import ConfigError, NotFoundError, SpxError
from spx.platform import cluster, homelock, lifecycle, lineage, paths, sizing
from spx.platform.progress import PlainDisplay
from spx.platform.runner import warm_up
from spx.platform.scheduler import Scheduler
from spx.platform.settings import Settings, ensure_home, mask_url
from spx.platform.spec import SweepSpec, parse_spec, spec_hash, strategy_context, trial_config
from spx.platform.store import Store, SweepRow, SweepStatus, TrialRow, TrialStatus
from spx.platform.tracking import Tracker, check_backend, sweep_params
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
    force: bool = False
    """Run trials whose memory estimate exceeds the largest Ray node's (``--force``)."""
    store: Store = field(init=False)
    tracker: Tracker = field(init=False)

    def prepare(self) -> None:
        """Every check before the sweep row: SPX_HOME, the tracking URI, the name, the
        cluster's capacity; then MLflow opens (its tables made on first use)."""
        ensure_home(self.settings)
        check_backend(self.settings.tracking_uri)  # milliseconds: before Ray starts
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
        # init.from: resolved, exported once and checksummed; its trials carry the lineage.
        self.spec = lineage.bind(self.spec, self.store, self.settings)
        cluster.connect(self.settings.ray_address, self.spec.import_path)
        r = self.spec.resources
        cluster.check_capacity(r.cpus_per_worker, r.gpus_per_worker, r.workers_per_trial)
        if not self.force:
            sizing.check_launch(self.spec, cluster.node_memory())
        self._warm_up()
        self._open_tracker()

    def _open_tracker(self) -> None:
        """MLflow's client; on a fresh backend this creates its tables, one process at a time."""
        with homelock.setup_lock(self.settings.home, [self.settings.tracking_uri]):
            self.tracker = Tracker(self.settings.tracking_uri, self.settings.artifacts)

    def _warm_up(self) -> None:
        """Worker processes start importing while the driver sets up MLflow (runner.warm_up);
        a multi-worker trial starts its own processes, so it gains nothing from this."""
        r = self.spec.resources
        if r.workers_per_trial == 1:
            data = self.settings.home / "data"
            warm_up(r.concurrent, r.cpus_per_worker, r.gpus_per_worker, self.spec.task, data)

    def run(self) -> SweepOutcome:
        """Launch a new sweep."""
        try:
            self.prepare()
            sweep = self.store.create_sweep(
                self.spec.name,
                task=self.spec.task,
                method=self.spec.method,
                spec_text=self.spec_text,
                spec_hash=spec_hash(self.spec_text),
            )
        except BaseException:
            # `launch --detach` wrote a pid file naming this process; no sweep will run.
            lifecycle.forget_driver(self.settings, self.spec.name)
            raise
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
        self.spec = lineage.bind(self.spec, self.store, self.settings, trials)
        cluster.connect(self.settings.ray_address)
        self._warm_up()
        self._open_tracker()
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
        status, error = SweepStatus.FAILED, None
        try:
            lifecycle.record_driver(self.settings, sweep.name)
            storage = study_storage_url(self.settings.store_url)
            with homelock.setup_lock(self.settings.home, [storage] if storage else []):
                # An Optuna method creates its study's tables here on first use.
                strategy = build_strategy(self.spec.method, strategy_context(self.spec, storage))
            ended = {number: str(t.status) for number, t in done.items()}
            self.display.start(sweep.name, strategy.total, ended)  # a resume counts on
            folder = checkpoint_folder(self.settings, sweep)
            trials = Scheduler(self, sweep, strategy, exp, parent, done, self._stopper(), folder)
            trials.run()
            status = SweepStatus.STOPPED if trials.stopping else SweepStatus.COMPLETED
        except KeyboardInterrupt:
            status = SweepStatus.STOPPED
            raise
        except BaseException as exc:
            error = exc
            raise
        finally:
            self._close(sweep, parent, status, error)
        return self.outcome(sweep.name)

    def _close(
        self, sweep: SweepRow, parent: str | None, status: SweepStatus, error: BaseException | None
    ) -> None:
        """End the sweep's row, its parent run and its pid file, each even when another
        fails: on a full disk the store write fails, and the pid file must go all the same."""
        self.display.stop()
        reason = None if error is None else mask_url(f"{type(error).__name__}: {error}")[:5000]
        try:
            self.store.update_sweep(sweep.id, status=status, finished=True, error=reason)
        except SpxError as exc:
            if error is None:
                raise
            # The error already in flight says why; this one is its echo (the disk is full).
            log.error("sweep %s could not be marked %s: %s", sweep.name, status.value, exc)
        finally:
            if reason is not None:
                self.tracker.set_tags(parent, {"spx.error": reason})
            self.tracker.end_run(parent, "FINISHED" if status == "COMPLETED" else "KILLED")
            try:
                lifecycle.forget_driver(self.settings, sweep.name)
            except OSError as exc:
                log.error("could not remove the driver's pid file: %s", exc)
            if self.tracker.failures:
                log.warning(
                    "%d MLflow calls failed or were skipped; `spx sweep sync %s` copies the "
                    "store into MLflow",
                    self.tracker.failures,
                    sweep.name,
                )

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
        tags = {"spx.sweep": sweep.name, **lineage.run_tags(self.spec.fixed)}
        parent = self.tracker.start_run(exp, self.spec.name, params, tags=tags)
        self.tracker.log_text(parent, self.spec_text, "sweep.yaml")
        return exp, parent

    def outcome(self, name: str) -> SweepOutcome:
        return outcome(
            self.store, name, self.spec.objectives[0].metric, self.spec.objectives[0].goal
        )


def outcome(store: Store, name: str, metric: str, goal: str) -> SweepOutcome:
    sweep = store.get_sweep(name)
    trials = store.trials(sweep.id)
    return SweepOutcome(sweep, trials, lineage.best_trial(trials, metric, goal), metric)


def launch(
    spec: SweepSpec,
    spec_text: str,
    settings: Settings,
    display: PlainDisplay,
    force: bool = False,
) -> SweepOutcome:
    """Run a whole sweep and return its outcome (``force``: skip the trial memory check)."""
    return Driver(spec, spec_text, settings, display, force).run()


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
    """``checkpoints/<id>-<file name>/`` (or the folder an earlier version named)."""
    return paths.sweep_folder(settings, sweep)
