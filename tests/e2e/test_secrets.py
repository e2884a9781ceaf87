"""Passwords given to spx stay off every command line, out of Ray's job table, the detached
driver's log, every file under SPX_HOME and MLflow, and off `spx ui`'s servers' command
lines, with real processes: a sweep on the local PostgreSQL (trust auth takes any password)
and the MLflow UI and optuna-dashboard on it.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import urllib.request
import uuid
from pathlib import Path

import psutil
import pytest
import sqlalchemy as sa
from helpers import run_spx, spx_exe, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.postgres]

STORE_PW = f"StorePw{uuid.uuid4().hex[:10]}"
TRACK_PW = f"TrackPw{uuid.uuid4().hex[:10]}"
SECRETS = (STORE_PW.encode(), TRACK_PW.encode())

SWEEP = """
name: secret
task: digits-mlp
fixed: {train.steps: 200000, train.report_every: 20, model.width: 8}
resources: {concurrent: 1}
"""

# Ray's job table, read straight from the GCS (a driver joining a local instance bound to
# 127.0.0.1 would be sent to the machine's outward address); the local instance wants the
# token it keeps in ~/.ray.
JOBS = """
import json, sys
from ray._raylet import GcsClient
jobs = GcsClient(address=sys.argv[1]).get_all_job_info(timeout=60)
print(json.dumps([job.entrypoint for job in jobs.values()]))
"""


@pytest.fixture(scope="module")
def urls():
    """A store URL and a tracking URI on fresh schemas of the test database, each with a
    password; the schemas (and the store's Optuna schema) are dropped afterwards."""
    base = os.environ.get("SPX_TEST_POSTGRES_URL")
    if not base:
        pytest.skip("SPX_TEST_POSTGRES_URL is not set")
    tag = uuid.uuid4().hex[:10]
    schemas = [f"spx_secret_{tag}", f"spx_secret_{tag}_mlflow", f"spx_secret_{tag}_optuna"]
    admin = sa.create_engine(
        base, isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 2}
    )
    try:
        with admin.connect() as conn:
            for schema in schemas:
                conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    except sa.exc.OperationalError as exc:
        pytest.skip(f"PostgreSQL did not answer: {str(exc).splitlines()[0]}")

    def url(password: str, schema: str) -> str:
        made = sa.make_url(base).set(password=password)
        made = made.update_query_dict({"options": f"-csearch_path={schema}"})
        return made.render_as_string(hide_password=False)

    try:
        yield url(STORE_PW, schemas[0]), url(TRACK_PW, schemas[1])
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text("SET lock_timeout = '30s'"))  # never hang on a live session
            for schema in schemas:
                conn.execute(sa.text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        admin.dispose()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _cmdline(proc: psutil.Process) -> bytes:
    try:
        return Path(f"/proc/{proc.pid}/cmdline").read_bytes()
    except OSError:  # it has exited
        return b""


def _text(cmdline: bytes) -> str:
    return cmdline.replace(b"\0", b" ").decode(errors="replace")


def _leaking_command_lines() -> list[str]:
    """The command line of every process on this machine that holds one of the passwords."""
    found = []
    for proc in psutil.process_iter():
        line = _cmdline(proc)
        if any(s in line for s in SECRETS):
            found.append(f"{proc.pid}: {_text(line)}")
    return found


def _files_holding_a_password(root: Path) -> list[str]:
    return [
        str(p) for p in root.rglob("*") if p.is_file() and any(s in p.read_bytes() for s in SECRETS)
    ]


def _ray_entrypoints(driver: psutil.Process) -> list[str]:
    """The entrypoints in the job table of the local Ray instance ``driver`` started."""
    found = (re.search(rb"--gcs-address=(\S+?)\0", _cmdline(p)) for p in driver.children(True))
    address = next(m for m in found if m).group(1).decode()
    env = {**os.environ, "RAY_AUTH_MODE": "token"}
    out = subprocess.run(
        [sys.executable, "-c", JOBS, address], capture_output=True, text=True, timeout=120, env=env
    )
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def _reported_steps(store: str) -> int:
    """The steps the sweep's trial has reported (read, never creating the store's tables:
    the driver does that)."""
    engine = sa.create_engine(store)
    try:
        with engine.connect() as conn:
            return conn.execute(sa.text("SELECT max(step) FROM trials")).scalar() or 0
    except sa.exc.ProgrammingError:  # no table yet
        return 0
    finally:
        engine.dispose()


def _kill(driver: psutil.Process) -> None:
    """End a driver that is still running, and the Ray processes it started."""
    family = [driver, *driver.children(recursive=True)]
    for proc in family:
        with contextlib.suppress(psutil.Error):
            proc.kill()
    psutil.wait_procs(family, timeout=30)


def test_a_sweeps_passwords_leave_no_trace(urls, tmp_path):
    store, tracking = urls
    home = tmp_path / "home"
    (tmp_path / "sweep.yaml").write_text(SWEEP)
    env = {**os.environ, "SPX_HOME": str(home)}
    for name in ("SPX_STORE_URL", "MLFLOW_TRACKING_URI", "RAY_ADDRESS"):
        env.pop(name, None)
    out, err = (tmp_path / "out.txt").open("w+"), (tmp_path / "err.txt").open("w+")
    args = ["sweep", "launch", "sweep.yaml", "--plain", "--store", store]
    proc = subprocess.Popen(
        [spx_exe(), *args, f"--tracking-uri={tracking}"],
        cwd=tmp_path,
        env=env,
        stdout=out,
        stderr=err,
    )
    driver = psutil.Process(proc.pid)
    try:
        # the first instant, before it re-executes itself, is the only one it shows them
        wait_for(lambda: not any(s in _cmdline(driver) for s in SECRETS), timeout=60, every=0.05)
        assert b"sweep\0launch" in _cmdline(driver)
        leaks: list[str] = []

        def trial_reporting() -> bool:
            leaks.extend(_leaking_command_lines())
            assert proc.poll() is None, Path(err.name).read_text()
            return _reported_steps(store) > 0

        wait_for(trial_reporting, timeout=240, every=0.5)
        assert not leaks, leaks  # the driver, Ray's own processes and its trial worker
        assert any("ray::" in _text(_cmdline(p)) for p in driver.children(recursive=True))
        entrypoints = _ray_entrypoints(driver)
        assert any("sweep launch sweep.yaml" in e for e in entrypoints), entrypoints
        assert not [e for e in entrypoints if STORE_PW in e or TRACK_PW in e], entrypoints
        assert not _leaking_command_lines()
        stop = run_spx(
            "sweep", "stop", "secret", "--cancel", cwd=tmp_path, env={**env, "SPX_STORE_URL": store}
        )
        assert stop.returncode == 0, stop.stdout + stop.stderr
        assert proc.wait(timeout=240) == 0, Path(err.name).read_text()
    finally:
        if proc.poll() is None:  # the test failed midway
            _kill(driver)
    printed = Path(out.name).read_text() + Path(err.name).read_text()
    assert "postgres:***@" in printed and STORE_PW not in printed and TRACK_PW not in printed
    assert _files_holding_a_password(home) == []
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking)
    runs = client.search_runs([client.get_experiment_by_name("secret").experiment_id])
    assert len(runs) == 2  # the sweep and its trial, none holding a password
    assert not [r for r in runs if STORE_PW in str(r.data) or TRACK_PW in str(r.data)]


def test_a_detached_launch_with_a_mistyped_scheme_logs_no_password(tmp_path):
    home = tmp_path / "home"
    (tmp_path / "sweep.yaml").write_text(SWEEP.replace("secret", "typo"))
    typo = f"postgres://postgres:{TRACK_PW}@127.0.0.1:5432/test"  # postgres://, not postgresql
    env = {"SPX_HOME": str(home), "SPX_STORE_URL": "", "MLFLOW_TRACKING_URI": "", "RAY_ADDRESS": ""}
    launched = run_spx(
        "sweep", "launch", "sweep.yaml", "--detach", "--tracking-uri", typo, cwd=tmp_path, env=env
    )
    printed = launched.stdout + launched.stderr
    assert TRACK_PW not in printed
    started = re.search(r"pid (\d+)", launched.stdout)
    if started:  # the driver found the bad URI itself: it must end, and say so in its log
        pid = int(started.group(1))
        wait_for(lambda: not psutil.pid_exists(pid) or psutil.Process(pid).status() == "zombie")
        log = next((home / "logs").glob("typo*.log")).read_text()
        assert "postgres://postgres:***@127.0.0.1" in log, log
    else:
        assert launched.returncode == 2, printed
    assert _files_holding_a_password(home) == []


def _serve(args: list[str], url: str, tmp_path: Path) -> tuple[list[str], str]:
    """Start `spx ui ...`, wait until ``url`` answers; the command lines of it and of every
    process under it, and the answer."""
    proc = subprocess.Popen(
        [spx_exe(), "ui", *args],
        cwd=tmp_path,
        env={**os.environ, "SPX_HOME": str(tmp_path / "home")},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:

        def answer() -> str | None:
            assert proc.poll() is None, proc.stdout.read().decode()
            try:
                with urllib.request.urlopen(url, timeout=2) as r:
                    return r.read().decode()
            except OSError:
                return None

        body = wait_for(answer, timeout=180, every=0.5)
        family = [psutil.Process(proc.pid), *psutil.Process(proc.pid).children(recursive=True)]
        return [_text(_cmdline(p)) for p in family], body
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=60)


def test_spx_ui_servers_get_the_url_through_their_environment(urls, tmp_path):
    store, tracking = urls
    port = _free_port()
    health = f"http://127.0.0.1:{port}/health"
    lines, body = _serve(["--port", str(port), "--tracking-uri", tracking], health, tmp_path)
    assert "OK" in body and any("mlflow ui" in line for line in lines), lines
    assert not [line for line in lines if TRACK_PW in line], lines

    import optuna

    from spx.search.study_storage import open_storage, study_storage_url

    optuna.create_study(storage=open_storage(study_storage_url(store)), study_name="ui-secret")
    port = _free_port()
    studies = f"http://127.0.0.1:{port}/api/studies"
    lines, body = _serve(["optuna", "--port", str(port), "--store", store], studies, tmp_path)
    assert "ui-secret" in body and any("spx.dashboards.optuna_ui" in line for line in lines), lines
    assert not [line for line in lines if STORE_PW in line], lines
