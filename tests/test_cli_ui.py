"""`spx ui` takes its servers down with it, and a port in use is one line and exit 1."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import urllib.request

import psutil
import pytest
from helpers import run_spx, spx_exe, wait_for

pytestmark = pytest.mark.e2e


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


def _alive(process: psutil.Process) -> bool:
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


@pytest.mark.parametrize(
    ("which", "path", "sig", "code"),
    [
        ("mlflow", "/health", signal.SIGTERM, 143),
        ("optuna", "/api/studies", signal.SIGINT, 130),
        ("optuna", "/api/studies", signal.SIGHUP, 129),  # the terminal closed
    ],
)
def test_the_servers_die_with_spx_ui(tmp_path, which, path, sig, code):
    import optuna

    from spx.search.study_storage import study_storage_url

    storage = study_storage_url(f"sqlite:///{tmp_path / 'home' / 'spx.db'}")
    (tmp_path / "home").mkdir()
    optuna.create_study(storage=storage, study_name="ui")
    port = _free_port()
    proc = subprocess.Popen(
        [spx_exe(), "ui", which, "--port", str(port)],
        env={**os.environ, "SPX_HOME": str(tmp_path / "home"), "SPX_STORE_URL": ""},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    children: list[psutil.Process] = []
    try:
        wait_for(lambda: _answers(f"http://127.0.0.1:{port}{path}") or proc.poll(), 120)
        assert proc.poll() is None, "spx ui exited before serving"
        children = psutil.Process(proc.pid).children(recursive=True)
        assert children
        os.kill(proc.pid, sig)  # spx ui alone, as a service manager or kill(1) would
        exit_code = proc.wait(timeout=60)
        deadline = time.monotonic() + 10
        while any(_alive(c) for c in children) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert [c.pid for c in children if _alive(c)] == []
        assert not _answers(f"http://127.0.0.1:{port}{path}")
        assert exit_code == code  # 128 + the signal
    finally:  # on a failure, leave nothing serving
        for process in [*children, psutil.Process(proc.pid)] if proc.poll() is None else children:
            if _alive(process):
                process.kill()
        proc.wait(timeout=30)


@pytest.mark.parametrize("which", ["mlflow", "optuna"])
def test_a_port_in_use_is_one_line_and_exit_1(tmp_path, which):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = run_spx(
            "ui",
            which,
            "--port",
            str(port),
            cwd=tmp_path,
            env={"SPX_HOME": str(tmp_path / "home"), "SPX_STORE_URL": ""},
            timeout=60,
        )
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert proc.stderr.splitlines() == [
        f"error: port {port} on 127.0.0.1 is already in use (another `spx ui`?): "
        "stop that one or choose another with --port"
    ]
    assert not (tmp_path / "home" / "mlflow.db").exists()  # nothing was started


def test_optuna_without_studies_is_one_line_not_a_traceback(tmp_path):
    proc = run_spx("ui", "optuna", "--port", str(_free_port()), cwd=tmp_path,
                   env={"SPX_HOME": str(tmp_path), "SPX_STORE_URL": ""}, timeout=60)  # fmt: skip
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: no Optuna studies at sqlite:///")
    assert "Traceback" not in proc.stderr


def test_a_port_out_of_range_is_exit_2(tmp_path):
    proc = run_spx("ui", "--port", "70000", cwd=tmp_path, env={"SPX_HOME": str(tmp_path)})
    assert proc.returncode == 2
    assert "--port" in proc.stderr and "70000" in proc.stderr
