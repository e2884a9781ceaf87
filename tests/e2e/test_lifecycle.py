"""A sweep's life from the shell: launch --detach, status --watch, stop, logs, repair, sync.

Real processes on a local Ray, SQLite and MLflow; the detached driver is found through its
pid file under SPX_HOME/run, and every test ends with no driver left behind.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import sqlite3
import time
from pathlib import Path

import psutil
import pytest
from helpers import mlflow_content, run_spx, wait_for
from mlflow.tracking import MlflowClient

from spx.platform.paths import file_name
from spx.platform.store import Store

pytestmark = pytest.mark.e2e

SWEEP = """
name: {name}
task: digits-mlp
fixed: {{train.steps: {steps}, train.report_every: 50, train.checkpoint_every: 100,
        model.width: 16}}
parameters: {{train.seed: {{values: {seeds}}}}}
resources: {{concurrent: 2}}
retries: 1
"""


class Home:
    """One SPX_HOME in a temporary folder, with shortcuts to its store and MLflow."""

    def __init__(self, root: Path):
        self.root = root
        self.path = root / "home"
        self.env = {"SPX_HOME": str(self.path), "SPX_LOST_AFTER_S": "120"}

    def spx(self, *args: str, env: dict[str, str] | None = None, timeout: int = 600):
        return run_spx(*args, cwd=self.root, env={**self.env, **(env or {})}, timeout=timeout)

    def sweep_file(self, name: str, seeds: list[int], steps: int) -> str:
        (self.root / f"{name}.yaml").write_text(SWEEP.format(name=name, seeds=seeds, steps=steps))
        return f"{name}.yaml"

    def store(self) -> Store:
        return Store.open(f"sqlite:///{self.path / 'spx.db'}")

    def trials(self, name: str):
        if not (self.path / "spx.db").exists():
            return []
        with self.store() as store:
            try:
                return store.trials(store.get_sweep(name).id)
            except Exception:
                return []

    def driver_pid(self, name: str) -> int:
        return json.loads((self.path / "run" / f"{file_name(name)}.json").read_text())["pid"]

    @property
    def mlflow(self) -> str:
        return f"sqlite:///{self.path / 'mlflow.db'}"

    def runs(self, name: str) -> list:
        client = MlflowClient(tracking_uri=self.mlflow)
        experiment = client.get_experiment_by_name(name)
        return client.search_runs([experiment.experiment_id]) if experiment else []

    def runs_of(self, name: str, trial: str) -> list:
        return [r for r in self.runs(name) if r.data.tags.get("spx.trial") == trial]


@pytest.fixture
def home(tmp_path):
    home = Home(tmp_path)
    yield home
    for pid_file in (home.path / "run").glob("*.json"):  # a test that failed midway
        with contextlib.suppress(ProcessLookupError, ValueError, OSError):
            os.killpg(json.loads(pid_file.read_text())["pid"], signal.SIGKILL)


def _running_past(home: Home, name: str, step: int) -> bool:
    return any(t.status == "RUNNING" and (t.step or 0) >= step for t in home.trials(name))


def _gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def test_detach_then_stop_lets_running_trials_finish(home):
    launched = home.spx(
        "sweep", "launch", home.sweep_file("det", [0, 1, 2, 3, 4, 5], 1000), "--detach"
    )
    assert launched.returncode == 0, launched.stdout + launched.stderr
    assert "driver started in the background" in launched.stdout
    for command in ("spx sweep status det --watch", "spx sweep logs det", "spx sweep stop det"):
        assert command in launched.stdout
    # The hint answers at once: --detach returned only after the driver wrote the sweep.
    status = home.spx("sweep", "status", "det")
    assert status.returncode == 0, status.stdout + status.stderr
    pid = home.driver_pid("det")
    wait_for(lambda: _running_past(home, "det", 100))

    stopped = home.spx("sweep", "stop", "det")
    assert stopped.returncode == 0, stopped.stdout + stopped.stderr
    assert "stop requested" in stopped.stdout
    watched = home.spx("sweep", "status", "det", "--watch", "--interval", "0.5")
    assert watched.returncode == 0, watched.stdout + watched.stderr
    assert "det: STOPPED" in watched.stdout.splitlines()[-1]

    wait_for(lambda: _gone(pid), timeout=60)
    assert not (home.path / "run" / f"{file_name('det')}.json").exists()
    trials = home.trials("det")
    assert 2 <= len(trials) < 6  # the running ones finished; the rest never started
    assert {t.status for t in trials} == {"COMPLETED"}
    assert all(t.step == 1000 for t in trials)
    with home.store() as store:
        assert store.get_sweep("det").status == "STOPPED"

    log = home.spx("sweep", "logs", "det")
    assert log.returncode == 0 and "stop requested" in log.stdout, log.stderr
    journal = home.spx("sweep", "logs", "det", "0")
    assert journal.returncode == 0, journal.stderr
    assert journal.stdout.splitlines()[-1].split()[:2] == ["step", "1000"]


def test_detach_passes_on_a_driver_that_exits_before_the_sweep_begins(home):
    """The background driver cannot open its MLflow backend: --detach says why, exit 1."""
    tracking = "postgresql+psycopg://postgres@127.0.0.1:1/nowhere"
    sweep_file = home.sweep_file("early", [0], 10)
    launched = home.spx("sweep", "launch", sweep_file, "--detach", "--tracking-uri", tracking)
    assert launched.returncode == 1, launched.stdout + launched.stderr
    assert "the driver exited with code 1 before the sweep began" in launched.stderr
    assert "cannot open the MLflow tracking backend" in launched.stderr  # its log's tail
    assert "driver started in the background" not in launched.stdout
    assert home.trials("early") == []


def test_detach_hints_name_a_store_given_by_flag(home):
    store = f"sqlite:///{home.root / 'elsewhere.db'}"
    launched = home.spx(
        "sweep", "launch", home.sweep_file("hint", [0], 10), "--detach", "--store", store
    )
    assert launched.returncode == 0, launched.stdout + launched.stderr
    assert f"spx sweep status hint --store {store} --watch" in launched.stdout
    watched = home.spx("sweep", "status", "hint", "--store", store, "--watch", "--interval", "0.5")
    assert watched.returncode == 0, watched.stdout + watched.stderr
    assert "hint: COMPLETED" in watched.stdout.splitlines()[-1]


def test_cancel_stops_running_trials_and_marks_them(home):
    launched = home.spx("sweep", "launch", home.sweep_file("can", [0, 1, 2, 3], 20000), "--detach")
    assert launched.returncode == 0, launched.stdout + launched.stderr
    pid = home.driver_pid("can")
    wait_for(lambda: [(t.step or 0) >= 50 for t in home.trials("can")] == [True, True])

    cancelled = home.spx("sweep", "stop", "can", "--cancel", "--wait")
    assert cancelled.returncode == 0, cancelled.stdout + cancelled.stderr
    assert _gone(pid)
    trials = home.trials("can")
    assert len(trials) == 2
    for t in trials:
        assert (t.status, t.error) == ("PRUNED", "cancelled (spx sweep stop --cancel)")
        assert 50 <= t.step < 20000 and t.metrics["val/loss"] > 0
    runs = {r.info.run_name: r for r in home.runs("can")}
    assert {runs[f"trial-{t.number}"].info.status for t in trials} == {"KILLED"}
    assert runs["can"].info.status == "KILLED"


@pytest.mark.slow
def test_dead_driver_repair_then_resume(home):
    started = time.monotonic()
    launched = home.spx("sweep", "launch", home.sweep_file("dead", [0, 1, 2], 1500), "--detach")
    assert launched.returncode == 0, launched.stdout + launched.stderr
    pid = home.driver_pid("dead")
    wait_for(lambda: sum((t.step or 0) >= 150 for t in home.trials("dead")) >= 2)
    os.killpg(pid, signal.SIGKILL)  # the driver and its local Ray: a machine gone
    wait_for(lambda: _gone(pid), timeout=60)

    watched = home.spx("sweep", "status", "dead", "--watch")
    assert watched.returncode == 1 and "has exited" in watched.stderr, watched.stderr
    # Without the pid file (a driver on another host) only the heartbeat tells.
    (home.path / "run" / f"{file_name('dead')}.json").unlink()
    busy = home.spx("sweep", "repair", "dead")
    assert busy.returncode == 1 and "heartbeat" in busy.stderr, busy.stdout + busy.stderr
    time.sleep(2)
    repaired = home.spx("sweep", "repair", "dead", env={"SPX_LOST_AFTER_S": "1"})
    assert repaired.returncode == 0, repaired.stdout + repaired.stderr
    assert "RUNNING -> LOST" in repaired.stdout
    trials = home.trials("dead")
    assert "RUNNING" not in {t.status for t in trials}
    assert {t.status for t in trials} <= {"LOST", "COMPLETED"}
    runs = {r.info.run_name: r.info.status for r in home.runs("dead")}
    assert "RUNNING" not in runs.values()
    assert runs["dead"] == "KILLED"

    resumed = home.spx("sweep", "resume", "dead", "--plain")
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    trials = home.trials("dead")
    assert [(t.number, t.status, t.step) for t in trials] == [
        (n, "COMPLETED", 1500) for n in range(3)
    ]
    with home.store() as store:
        for t in trials:  # every report, every metric, once (the key forbids twice)
            by_step: dict[int, set[str]] = {}
            for _, step, name, _ in store.metric_history([t.id]):
                by_step.setdefault(step, set()).add(name)
            assert set(by_step) == set(range(50, 1501, 50))
            assert all(names == by_step[1500] for names in by_step.values())
    runs = home.runs("dead")
    assert len(runs) == 4 and {r.info.status for r in runs} == {"FINISHED"}
    print(f"driver killed, repaired, resumed: {time.monotonic() - started:.0f} s in all")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_sync_restores_mlflow_after_the_tracking_server_was_unreachable(home):
    nowhere = f"http://127.0.0.1:{_free_port()}"  # nothing listens there
    quick = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "2"}
    sweep = home.sweep_file("offline", [0, 1, 2], 150)
    launched = home.spx("sweep", "launch", sweep, "--plain", "--tracking-uri", nowhere, env=quick)
    assert launched.returncode == 0, launched.stdout + launched.stderr
    assert "spx sweep sync offline" in launched.stderr
    trials = home.trials("offline")
    assert [t.status for t in trials] == ["COMPLETED"] * 3
    assert all(t.mlflow_run_id is None for t in trials)

    synced = home.spx("sweep", "sync", "offline")  # into the default MLflow under SPX_HOME
    assert synced.returncode == 0, synced.stdout + synced.stderr
    assert "4 runs created" in synced.stdout
    content = mlflow_content(home.mlflow, "offline")
    assert content["offline"][0] == "FINISHED"
    with home.store() as store:
        for t in home.trials("offline"):
            status, params, tags, history = content[f"trial-{t.number}"]
            assert status == "FINISHED" and tags["spx.trial"] == str(t.number)
            assert params["train.seed"] == str(t.params["train.seed"])
            stored: dict[str, list] = {}
            for _, step, key, value in store.metric_history([t.id]):
                stored.setdefault(key, []).append((step, value))
            assert history == {k: sorted(v) for k, v in stored.items()}

    again = home.spx("sweep", "sync", "offline")
    assert again.returncode == 0 and "already in sync" in again.stdout, again.stdout
    assert mlflow_content(home.mlflow, "offline") == content


@pytest.mark.parametrize(
    "args",
    [
        ("stop", "nope"),
        ("status", "nope", "--watch"),
        ("logs", "nope"),
        ("logs", "nope", "3"),
        ("repair", "nope"),
        ("sync", "nope"),
    ],
)
def test_an_unknown_sweep_exits_2_naming_it(home, args):
    proc = home.spx("sweep", *args)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "no sweep named 'nope'" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.slow
def test_resume_reuses_the_run_a_dead_driver_created_but_never_stored(home):
    """A driver died between creating trial 0's MLflow run and storing its id: the store
    has no run id for a trial left LOST. Resume finds the run by its tags; no second one."""
    launched = home.spx("sweep", "launch", home.sweep_file("orphan", [0], 100), "--plain")
    assert launched.returncode == 0, launched.stdout + launched.stderr
    (first,) = home.runs_of("orphan", "0")
    with contextlib.closing(sqlite3.connect(home.path / "spx.db")) as db, db:
        db.execute("UPDATE trials SET mlflow_run_id = NULL, status = 'LOST', error = 'lost'")
        db.execute("UPDATE sweeps SET status = 'STOPPED'")

    resumed = home.spx("sweep", "resume", "orphan", "--plain")
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert [r.info.run_id for r in home.runs_of("orphan", "0")] == [first.info.run_id]
    (trial,) = home.trials("orphan")
    assert (trial.status, trial.error, trial.attempt) == ("COMPLETED", None, 2)
    assert trial.mlflow_run_id == first.info.run_id
    assert "[1/1 done]" in resumed.stdout and "[2/1" not in resumed.stdout
