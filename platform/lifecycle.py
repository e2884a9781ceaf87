"""A sweep's life around its driver: who drives it, stop requests, trials nobody drives.

While a driver runs a sweep it keeps ``SPX_HOME/run/<sweep>.json`` (pid, host, process
start time), so any command on that host can tell whether it is still alive. It stamps
``heartbeat_at`` on each RUNNING trial at every report and every ``DRIVER_HEARTBEAT_S``.
A RUNNING trial is *dead* when its driver's pid file names a process that has exited, or
when its heartbeat is older than ``Settings.lost_after_s`` (``SPX_LOST_AFTER_S``, default
120 s: a driver on another host, or one that left no pid file). ``resume`` and ``repair``
then mark it LOST (``resume`` runs it again from its checkpoint) or, once its attempts
exceed the sweep's ``retries``, FAILED.

``spx sweep stop`` writes its request into the sweep row (STOPPING or CANCELLING), which
the driver polls: stopping lets running trials finish and starts no new one; cancelling
also asks each running trial to stop at its next report (the early-termination path), so
it ends PRUNED with its checkpoint, its metrics so far and the error ``cancelled``.

File names derived from a sweep's name come from ``spx.platform.paths``:

>>> slug("my sweep/1")
'my_sweep_1-82e27a33'
"""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path

from spx.errors import SpxError, SweepBusyError
from spx.platform import paths
from spx.platform.settings import Settings
from spx.platform.store import Store, SweepRow, SweepStatus, TrialRow, TrialStatus
from spx.platform.store_models import utcnow

DRIVER_HEARTBEAT_S = 10.0
"""How often a driver stamps its RUNNING trials (also stamped at every report)."""
POLL_S = 1.0
"""How often a driver reads its sweep row for a stop request."""
CANCELLED = "cancelled (spx sweep stop --cancel)"
"""The ``error`` of a trial that a cancel stopped."""
TERMINAL = frozenset({SweepStatus.COMPLETED, SweepStatus.FAILED, SweepStatus.STOPPED})
STOP_REQUESTS = frozenset({SweepStatus.STOPPING, SweepStatus.CANCELLING})


def slug(name: str) -> str:
    """A file-name-safe form of a sweep name (slug and hash: ``paths.file_name``)."""
    return paths.file_name(name)


def log_path(settings: Settings, name: str) -> Path:
    """Where ``launch --detach`` sends the driver's output (``paths.find_log`` reads it)."""
    return paths.log_file(settings, name)


# -- the driver's pid file --------------------------------------------------------------


@dataclass(frozen=True)
class DriverRecord:
    pid: int
    host: str
    started: float
    """The process's start time (seconds since the epoch), so a reused pid is not mistaken."""

    def alive(self) -> bool | None:
        """True or False on the host that wrote the record; None (unknown) elsewhere."""
        import psutil

        if self.host != socket.gethostname():
            return None
        try:
            process = psutil.Process(self.pid)
            same = abs(process.create_time() - self.started) < 1.0
            # A detached driver's parent has exited; where nothing reaps it, it stays a zombie.
            return same and process.status() != psutil.STATUS_ZOMBIE
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            return False


def driver_file(settings: Settings, name: str) -> Path:
    return paths.driver_file(settings, name)


def record_driver(settings: Settings, name: str, pid: int | None = None) -> DriverRecord:
    """Write the pid file of the process ``pid`` (default: this one) driving ``name``."""
    import psutil

    pid = os.getpid() if pid is None else pid
    record = DriverRecord(pid, socket.gethostname(), psutil.Process(pid).create_time())
    path = driver_file(settings, name)
    tmp = path.with_name(path.name + ".part")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(json.dumps(asdict(record)))
        os.replace(tmp, path)
    except BaseException as exc:
        tmp.unlink(missing_ok=True)  # a full disk leaves no half-written pid file behind
        if isinstance(exc, OSError):
            reason = exc.strerror or str(exc)
            raise SpxError(f"cannot write the driver's pid file {path} ({reason})") from exc
        raise
    return record


def find_driver(settings: Settings, name: str) -> DriverRecord | None:
    try:
        return DriverRecord(**json.loads(paths.find_driver_file(settings, name).read_text()))
    except (OSError, ValueError, TypeError):
        return None


def forget_driver(settings: Settings, name: str) -> None:
    """Remove the pid file if this process wrote it."""
    record = find_driver(settings, name)
    if record is not None and record.pid == os.getpid():
        driver_file(settings, name).unlink(missing_ok=True)


# -- stop requests ----------------------------------------------------------------------


def request_stop(settings: Settings, store: Store, name: str, cancel: bool) -> SweepRow:
    """Ask the driver of ``name`` to stop (or cancel); returns the sweep row as it is now.

    A finished sweep is returned unchanged. When this host's pid file shows the driver has
    exited, nothing would ever act on the request: SweepBusyError says what to run instead.
    """
    sweep = store.get_sweep(name)
    if sweep.status in TERMINAL:
        return sweep
    record = find_driver(settings, name)
    if record is not None and record.alive() is False:
        sweep = store.get_sweep(name)  # it may have finished a moment ago
        if sweep.status in TERMINAL:
            return sweep
        raise SweepBusyError(
            f"no driver is running sweep {name!r} (pid {record.pid} has exited): "
            f"`spx sweep repair {name}` marks its trials, `spx sweep resume {name}` continues it"
        )
    return store.request_stop(name, cancel)


class Watch:
    """What a driver checks between trials: the sweep's stop request, and its heartbeats.

    ``poll`` reads the sweep row at most every ``POLL_S`` and stamps the given trials'
    heartbeats every ``DRIVER_HEARTBEAT_S``; it returns the request in force, if any.
    """

    def __init__(self, store: Store, sweep: SweepRow):
        self.store, self.name = store, sweep.name
        self.request = sweep.status if sweep.status in STOP_REQUESTS else None
        self._next_poll = 0.0
        self._next_beat = time.monotonic() + DRIVER_HEARTBEAT_S

    def poll(self, trial_ids: Iterable[int]) -> SweepStatus | None:
        now = time.monotonic()
        if now >= self._next_beat:
            self._next_beat = now + DRIVER_HEARTBEAT_S
            for trial_id in trial_ids:
                self.store.update_trial(trial_id, heartbeat=True)
        if now >= self._next_poll:
            self._next_poll = now + POLL_S
            status = self.store.get_sweep(self.name).status
            if status == SweepStatus.CANCELLING or (
                status == SweepStatus.STOPPING and self.request is None
            ):
                self.request = status
        return self.request


# -- trials no driver holds -------------------------------------------------------------


def heartbeat_age(trial: TrialRow, now: datetime) -> float | None:
    stamp = trial.heartbeat_at or trial.started_at
    return None if stamp is None else (now - stamp).total_seconds()


def claim(settings: Settings, sweep: SweepRow, trials: Iterable[TrialRow], force: bool) -> None:
    """Make sure no live driver holds the sweep; SweepBusyError names the evidence.

    A live pid file on this host always wins; otherwise a RUNNING trial with a heartbeat
    fresher than ``lost_after_s`` means a driver may be alive elsewhere (``force``: it is not).
    """
    record = find_driver(settings, sweep.name)
    alive = None if record is None else record.alive()
    if record is not None and alive:
        raise SweepBusyError(
            f"sweep {sweep.name!r} is still driven by pid {record.pid} on this host: "
            f"stop it first (`spx sweep stop {sweep.name}`) or wait for it to end"
        )
    if force or alive is False:
        return
    now = utcnow()
    for trial in trials:
        age = heartbeat_age(trial, now)
        if trial.status == TrialStatus.RUNNING and age is not None and age < settings.lost_after_s:
            raise SweepBusyError(
                f"trial {trial.number} of sweep {sweep.name!r} had a heartbeat {age:.0f} s ago "
                f"(SPX_LOST_AFTER_S is {settings.lost_after_s:g} s): its driver may still be "
                f"running elsewhere; wait, or run `spx sweep repair {sweep.name} --force`"
            )


@dataclass(frozen=True)
class Settled:
    """A dead trial and what ``settle`` marked it."""

    trial: TrialRow
    status: TrialStatus
    error: str

    @property
    def failed(self) -> bool:
        return self.status == TrialStatus.FAILED


def settle(store: Store, trials: Iterable[TrialRow], retries: int) -> list[Settled]:
    """Mark every RUNNING trial LOST, or FAILED once its attempts exceed ``retries``.

    Call after ``claim``: the caller has established that no driver holds these trials.
    """
    out = []
    now = utcnow()
    for trial in trials:
        if trial.status != TrialStatus.RUNNING:
            continue
        age = heartbeat_age(trial, now)
        seen = "never" if age is None else f"{age:.0f} s ago"
        reason = f"its driver went away (last heartbeat {seen})"
        if trial.attempt <= retries:
            settled = Settled(trial, TrialStatus.LOST, reason)
        else:
            settled = Settled(
                trial, TrialStatus.FAILED, f"lost after {trial.attempt} attempts: {reason}"
            )
        store.update_trial(
            trial.id, status=settled.status, error=settled.error, finished=settled.failed
        )
        out.append(settled)
    return out


def nothing_to_resume(sweep: SweepRow, trials: Iterable[TrialRow], retry_failed: bool) -> bool:
    """Whether resuming ``sweep`` would run nothing: it COMPLETED and no trial is left to
    run (RUNNING, LOST or PENDING; FAILED too with ``retry_failed``). A stopped or failed
    sweep is never done: resuming it is how it continues.

    >>> from types import SimpleNamespace as Row
    >>> done = Row(status=SweepStatus.COMPLETED)
    >>> nothing_to_resume(done, [Row(status=TrialStatus.FAILED)], retry_failed=False)
    True
    >>> nothing_to_resume(done, [Row(status=TrialStatus.FAILED)], retry_failed=True)
    False
    """
    if sweep.status != SweepStatus.COMPLETED:
        return False
    ended = {TrialStatus.COMPLETED, TrialStatus.PRUNED}
    if not retry_failed:
        ended.add(TrialStatus.FAILED)
    return all(t.status in ended for t in trials)


def replay_journal(store: Store, settings: Settings, sweep: SweepRow, trial: TrialRow) -> int:
    """Store what a dead trial wrote to its journal but no driver stored; rows written."""
    from spx.platform.runner import read_journal

    rows = [
        (step, name, float(value))
        for step, metrics in read_journal(trial_dir(settings, sweep, trial.number))
        for name, value in metrics.items()
    ]
    if not rows:
        return 0
    written = store.upsert_metrics(trial.id, rows)
    store.update_trial(trial.id, step=max(step for step, _, _ in rows))
    return written


def trial_dir(settings: Settings, sweep: SweepRow, number: int) -> Path:
    return paths.trial_folder(paths.sweep_folder(settings, sweep), number)


# -- repair -----------------------------------------------------------------------------


@dataclass
class RepairReport:
    sweep: SweepRow
    settled: list[Settled]
    replayed: int
    mlflow_failures: int


def repair(settings: Settings, name: str, force: bool = False) -> RepairReport:
    """After a driver died: mark its trials LOST/FAILED, end their MLflow runs, stop the sweep.

    Example: ``repair(resolve(), "quickstart").settled``
    """
    with Store.open(settings.store_url) as store:
        sweep = store.get_sweep(name)
        trials = store.trials(sweep.id)
        claim(settings, sweep, trials, force)
        from spx.platform.spec import parse_spec  # slow imports: after the cheap checks
        from spx.platform.tracking import Tracker

        retries = parse_spec(sweep.spec_text, name=sweep.name).retries
        settled = settle(store, trials, retries)
        replayed = sum(replay_journal(store, settings, sweep, s.trial) for s in settled)
        if sweep.status not in TERMINAL:
            store.update_sweep(sweep.id, status=SweepStatus.STOPPED, finished=True)
        tracker = Tracker(settings.tracking_uri, settings.artifacts)
        for s in settled:
            tracker.set_tags(s.trial.mlflow_run_id, {"spx.error": s.error[:5000]})
            kind = "FAILED" if s.status == TrialStatus.FAILED else "KILLED"
            tracker.end_run(s.trial.mlflow_run_id, kind)
        if sweep.status not in TERMINAL:
            tracker.end_run(sweep.mlflow_run_id, "KILLED")
        return RepairReport(store.get_sweep(name), settled, replayed, tracker.failures)
