"""`spx ui` serves the MLflow UI on the same backend, bound to 127.0.0.1."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import urllib.request

import pytest
from helpers import spx_exe

pytestmark = pytest.mark.e2e


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_spx_ui_serves_mlflow_on_loopback(tmp_path):
    port = _free_port()
    env = {**os.environ, "SPX_HOME": str(tmp_path / "home")}
    proc = subprocess.Popen(
        [spx_exe(), "ui", "--port", str(port)],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        body = None
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and body is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as r:
                    body = r.read().decode()
            except OSError:
                time.sleep(1)
        assert body is not None and "OK" in body
        assert (tmp_path / "home" / "mlflow.db").exists()
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)


def test_spx_ui_optuna_serves_the_sweeps_studies(tmp_path):
    from spx.search.base import Outcome
    from spx.search.optuna_search import OptunaSearch
    from spx.search.samplers import TPE
    from spx.search.space import FloatRange
    from spx.search.study_storage import study_storage_url

    home = tmp_path / "home"
    home.mkdir()
    storage = study_storage_url(f"sqlite:///{home / 'spx.db'}")
    study = OptunaSearch(
        {"x": FloatRange(0, 1)}, 2, TPE.sampler(0), storage_url=storage, study_name="ui-demo"
    )
    for _ in range(2):
        s = study.ask()
        study.tell(s.number, s.params["x"] ** 2, Outcome.COMPLETED)
    port = _free_port()
    proc = subprocess.Popen(
        [spx_exe(), "ui", "optuna", "--port", str(port)],
        cwd=tmp_path,
        env={**os.environ, "SPX_HOME": str(home)},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        body = None
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and body is None:
            try:
                url = f"http://127.0.0.1:{port}/api/studies"
                with urllib.request.urlopen(url, timeout=2) as r:
                    body = r.read().decode()
            except OSError:
                time.sleep(0.5)
        assert body is not None and "ui-demo" in body
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
