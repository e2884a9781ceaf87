"""An MLflow tracking server (on PostgreSQL) dies mid-sweep: the sweep finishes with nothing
lost from the store, and once the server is back `spx sweep sync` makes MLflow match the
store, with no metric point twice; a second sync writes nothing.

Needs the PostgreSQL server named by SPX_TEST_POSTGRES_URL (MLflow gets a fresh database
there, dropped afterwards).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

import pytest
import sqlalchemy as sa
from helpers import mlflow_content, run_spx, spx_exe

from spx.platform.store import Store

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.postgres]

SWEEP = """
name: server-down
task: digits-mlp
fixed: {train.steps: 2000, train.report_every: 50, model.width: 16}
parameters: {train.seed: {values: [0, 1, 2, 3]}}
resources: {concurrent: 2}
"""


@pytest.fixture
def mlflow_db() -> str:
    base = os.environ.get("SPX_TEST_POSTGRES_URL")
    if not base:
        pytest.skip("SPX_TEST_POSTGRES_URL is not set")
    name = f"spx_mlflow_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(
        base, isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 2}
    )
    try:
        with admin.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    except sa.exc.OperationalError as exc:
        pytest.skip(f"PostgreSQL did not answer: {str(exc).splitlines()[0]}")
    try:
        yield sa.make_url(base).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


class Server:
    """`mlflow server` in its own process group, so stopping it ends all of its workers."""

    def __init__(self, backend: str, root: Path):
        self.backend, self.root = backend, root
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.uri = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        mlflow = str(Path(sys.executable).with_name("mlflow"))
        cmd = [mlflow, "server", "--backend-store-uri", self.backend, "--host", "127.0.0.1"]
        cmd += ["--port", str(self.port), "--workers", "1"]
        cmd += ["--artifacts-destination", str(self.root / "artifacts")]
        log = (self.root / "mlflow-server.log").open("ab")
        self.proc = subprocess.Popen(
            cmd, cwd=self.root, stdout=log, stderr=log, start_new_session=True
        )
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            with (
                contextlib.suppress(OSError),
                urllib.request.urlopen(f"{self.uri}/health", timeout=2) as answer,
            ):
                if answer.status == 200:
                    return
            assert self.proc.poll() is None, (self.root / "mlflow-server.log").read_text()
            time.sleep(0.5)
        raise AssertionError("the MLflow server did not come up in 180 s")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=60)


def _trials(home: Path):
    try:
        with Store.open(f"sqlite:///{home / 'spx.db'}") as store:
            return store.trials(store.get_sweep("server-down").id)
    except Exception:
        return []


def test_tracking_server_dies_mid_sweep_then_sync_restores_it(mlflow_db, tmp_path):
    server = Server(mlflow_db, tmp_path)
    server.start()
    home = tmp_path / "home"
    (tmp_path / "s.yaml").write_text(SWEEP)
    env = {**os.environ, "SPX_HOME": str(home)}
    cmd = [spx_exe(), "sweep", "launch", "s.yaml", "--plain", "--tracking-uri", server.uri]
    began = time.monotonic()
    proc = subprocess.Popen(
        cmd, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        deadline = time.monotonic() + 300
        while not any((t.step or 0) >= 300 for t in _trials(home)):
            assert time.monotonic() < deadline and proc.poll() is None
            time.sleep(0.3)
        killed = time.monotonic()
        server.stop()
        out, _ = proc.communicate(timeout=600)
        ended = time.monotonic()
    finally:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        server.stop()
    assert proc.returncode == 0, out
    assert "spx sweep sync server-down" in out
    trials = _trials(home)
    assert [t.status for t in trials] == ["COMPLETED"] * 4
    with Store.open(f"sqlite:///{home / 'spx.db'}") as store:
        stored = {t.number: store.metric_history([t.id]) for t in trials}
    for t in trials:
        assert {step for _, step, _, _ in stored[t.number]} == set(range(50, 2001, 50))

    server.start()
    try:
        before = mlflow_content(server.uri, "server-down")
        sync = ("sweep", "sync", "server-down", "--tracking-uri", server.uri)
        synced = run_spx(*sync, cwd=tmp_path, env={"SPX_HOME": str(home)})
        assert synced.returncode == 0, synced.stdout + synced.stderr
        after = mlflow_content(server.uri, "server-down")
        again = run_spx(*sync, cwd=tmp_path, env={"SPX_HOME": str(home)})
        assert again.returncode == 0 and "already in sync" in again.stdout, again.stdout
        assert mlflow_content(server.uri, "server-down") == after
    finally:
        server.stop()
    assert before != after  # the outage left MLflow behind the store
    assert set(after) == {"server-down", *(f"trial-{n}" for n in range(4))}
    for t in trials:
        status, _, tags, history = after[f"trial-{t.number}"]
        assert status == "FINISHED" and tags["spx.trial"] == str(t.number)
        expected: dict[str, list] = {}
        for _, step, key, value in stored[t.number]:
            expected.setdefault(key, []).append((step, value))
        assert history == {k: sorted(v) for k, v in expected.items()}  # no point twice
    assert after["server-down"][0] == "FINISHED"
    points = sum(len(v) for c in after.values() for v in c[3].values())
    had = sum(len(v) for c in before.values() for v in c[3].values())
    print(
        f"launch to end {ended - began:.0f} s, server killed {killed - began:.0f} s in; "
        f"MLflow had {len(before)} runs / {had} points before sync, {len(after)} / {points} after"
    )
