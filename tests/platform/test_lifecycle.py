"""Stop requests, driver liveness, dead trials: lifecycle rules on a real store (both backends)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from spx.errors import ConfigError, SweepBusyError
from spx.platform import lifecycle
from spx.platform.settings import Settings, resolve
from spx.platform.store import Store, SweepStatus, TrialStatus
from spx.platform.store_models import Trial, utcnow


def _settings(tmp_path: Path, url: str, lost_after_s: float = 120.0) -> Settings:
    return Settings(tmp_path / "home", url, "sqlite:///unused.db", None, lost_after_s)


def _sweep(store: Store, status: SweepStatus = SweepStatus.RUNNING):
    sweep = store.create_sweep("life", task="digits-mlp", method="grid", spec_text="", spec_hash="")
    store.update_sweep(sweep.id, status=status)
    return store.get_sweep("life")


def _running(store: Store, sweep_id: int, number: int, attempt: int = 1, age_s: float = 0.0):
    trial = store.add_trial(sweep_id, number, {})
    store.update_trial(trial.id, status=TrialStatus.RUNNING, attempt=attempt, started=True)
    past = sa.update(Trial).where(Trial.id == trial.id)
    with store.engine.begin() as conn:  # a heartbeat from the past
        conn.execute(past.values(heartbeat_at=utcnow() - timedelta(seconds=age_s)))
    return trial


def _dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def _write_record(settings: Settings, pid: int, started: float) -> None:
    path = lifecycle.driver_file(settings, "life")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"pid": pid, "host": socket.gethostname(), "started": started}))


# -- stop requests ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("before", "cancel", "after"),
    [
        (SweepStatus.PENDING, False, SweepStatus.STOPPING),
        (SweepStatus.RUNNING, False, SweepStatus.STOPPING),
        (SweepStatus.RUNNING, True, SweepStatus.CANCELLING),
        (SweepStatus.STOPPING, True, SweepStatus.CANCELLING),
        (SweepStatus.CANCELLING, False, SweepStatus.CANCELLING),  # a stop never undoes a cancel
        (SweepStatus.COMPLETED, True, SweepStatus.COMPLETED),
        (SweepStatus.STOPPED, False, SweepStatus.STOPPED),
    ],
)
def test_request_stop_moves_only_live_sweeps(store: Store, before, cancel, after) -> None:
    _sweep(store, before)
    assert store.request_stop("life", cancel).status is after


def test_watch_sees_the_request_and_stamps_heartbeats(store: Store, monkeypatch) -> None:
    sweep = _sweep(store)
    trial = _running(store, sweep.id, 0, age_s=500)
    monkeypatch.setattr(lifecycle, "DRIVER_HEARTBEAT_S", 0.0)
    watch = lifecycle.Watch(store, sweep)
    assert watch.poll([trial.id]) is None
    assert lifecycle.heartbeat_age(store.trials(sweep.id)[0], utcnow()) < 5
    store.request_stop("life")
    watch._next_poll = 0.0
    assert watch.poll([]) is SweepStatus.STOPPING


def test_stop_with_a_dead_local_driver_says_what_to_run(store: Store, tmp_path) -> None:
    settings = _settings(tmp_path, store.url)
    _sweep(store)
    _write_record(settings, _dead_pid(), 0.0)
    with pytest.raises(SweepBusyError, match="spx sweep repair life"):
        lifecycle.request_stop(settings, store, "life", cancel=False)
    assert store.get_sweep("life").status is SweepStatus.RUNNING


# -- who holds a sweep --------------------------------------------------------------------


def test_a_live_driver_on_this_host_holds_the_sweep(store: Store, tmp_path) -> None:
    settings = _settings(tmp_path, store.url)
    sweep = _sweep(store)
    record = lifecycle.record_driver(settings, "life")  # this very process
    assert record.pid == os.getpid() and record.alive()
    with pytest.raises(SweepBusyError, match=f"pid {os.getpid()}"):
        lifecycle.claim(settings, sweep, [], force=True)
    lifecycle.forget_driver(settings, "life")
    assert lifecycle.find_driver(settings, "life") is None


def test_a_fresh_heartbeat_holds_the_sweep_unless_forced(store: Store, tmp_path) -> None:
    settings = _settings(tmp_path, store.url, lost_after_s=60)
    sweep = _sweep(store)
    _running(store, sweep.id, 0, age_s=5)
    trials = store.trials(sweep.id)
    with pytest.raises(SweepBusyError, match="trial 0 .* heartbeat 5 s ago"):
        lifecycle.claim(settings, sweep, trials, force=False)
    lifecycle.claim(settings, sweep, trials, force=True)
    lifecycle.claim(_settings(tmp_path, store.url, lost_after_s=2), sweep, trials, force=False)


def test_a_dead_pid_file_frees_the_sweep_whatever_the_heartbeat(store: Store, tmp_path) -> None:
    settings = _settings(tmp_path, store.url)
    sweep = _sweep(store)
    _running(store, sweep.id, 0, age_s=1)
    _write_record(settings, _dead_pid(), 0.0)
    lifecycle.claim(settings, sweep, store.trials(sweep.id), force=False)


def test_settle_marks_lost_within_retries_and_failed_beyond(store: Store) -> None:
    sweep = _sweep(store)
    _running(store, sweep.id, 0, attempt=1, age_s=300)
    _running(store, sweep.id, 1, attempt=2, age_s=300)
    done = store.add_trial(sweep.id, 2, {})
    store.update_trial(done.id, status=TrialStatus.COMPLETED)
    settled = lifecycle.settle(store, store.trials(sweep.id), retries=1)
    assert [(s.trial.number, s.status) for s in settled] == [
        (0, TrialStatus.LOST),
        (1, TrialStatus.FAILED),
    ]
    t0, t1, t2 = store.trials(sweep.id)
    assert (t0.status, t0.finished_at) == (TrialStatus.LOST, None)
    assert t1.status is TrialStatus.FAILED and t1.finished_at is not None
    assert t1.error.startswith("lost after 2 attempts: its driver went away (last heartbeat 30")
    assert t2.status is TrialStatus.COMPLETED


def test_lost_after_comes_from_the_environment(monkeypatch) -> None:
    monkeypatch.setenv("SPX_LOST_AFTER_S", "7.5")
    assert resolve().lost_after_s == 7.5
    monkeypatch.setenv("SPX_LOST_AFTER_S", "soon")
    with pytest.raises(ConfigError, match="SPX_LOST_AFTER_S.*'soon'"):
        resolve()


def test_docstring_examples() -> None:
    import doctest

    assert doctest.testmod(lifecycle).failed == 0
