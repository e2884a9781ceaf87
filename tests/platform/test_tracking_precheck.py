"""A tracking backend MLflow cannot use stops `spx sweep launch` before the sweep row.

Each launch runs the installed `spx`; the store exists beforehand (so "no row" is a real
check), and the failed launch must leave it without a sweep, its name free to launch.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from helpers import TINY_SWEEP, run_spx

from spx.platform.store import Store
from spx.platform.tracking import DATABASE_SCHEMES, MLFLOW_SCHEMES, check_backend


@pytest.fixture
def home(spx_home: Path, tmp_path: Path) -> Path:
    (tmp_path / "s.yaml").write_text(TINY_SWEEP.replace("name: tiny", "name: pre"))
    Store.open(f"sqlite:///{spx_home / 'spx.db'}").close()
    return spx_home


def _launch(home: Path, *args: str):
    return run_spx("sweep", "launch", "s.yaml", "--plain", *args, cwd=home.parent, timeout=120)


def _sweeps(home: Path) -> list[str]:
    with Store.open(f"sqlite:///{home / 'spx.db'}") as store:
        return [s.name for s in store.list_sweeps()]


def _one_line(proc) -> str:
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    return lines[0]


@pytest.mark.parametrize("uri", ["bogus://x", "postgres://bob:hunter2secret@db/x"])
def test_a_scheme_mlflow_does_not_serve_exits_2(home, uri):
    proc = _launch(home, "--tracking-uri", uri)
    assert proc.returncode == 2
    line = _one_line(proc)
    assert line.startswith("error: --tracking-uri: MLflow has no tracking store for the scheme")
    assert "hunter2secret" not in proc.stderr + proc.stdout
    assert _sweeps(home) == []


def test_a_corrupt_mlflow_db_exits_1(home):
    (home / "mlflow.db").write_bytes(b"not a database, " * 512)
    proc = _launch(home)
    assert proc.returncode == 1
    line = _one_line(proc)
    assert "cannot open the MLflow tracking backend at sqlite:///" in line
    assert "file is not a database" in line
    assert _sweeps(home) == []


@pytest.mark.postgres
def test_a_postgres_database_that_does_not_exist_exits_1(home, postgres_base_url):
    import sqlalchemy as sa

    base = sa.make_url(postgres_base_url)
    missing = base.set(password="s3cretpw", database=f"spx_missing_{uuid.uuid4().hex[:8]}")
    uri = missing.render_as_string(hide_password=False)
    proc = _launch(home, "--tracking-uri", uri)
    assert proc.returncode == 1
    line = _one_line(proc)
    assert f"cannot open the MLflow tracking backend at {base.drivername}://" in line
    assert "does not exist" in line and ":***@" in line
    assert "s3cretpw" not in proc.stderr + proc.stdout
    assert _sweeps(home) == []


@pytest.mark.e2e
def test_the_name_of_a_failed_launch_can_be_launched(home):
    assert _launch(home, "--tracking-uri", "bogus://x").returncode == 2
    (home / "mlflow.db").write_bytes(b"garbage" * 100)
    assert _launch(home).returncode == 1
    (home / "mlflow.db").unlink()  # the user fixes the backend and tries again
    proc = _launch(home)
    assert proc.returncode == 0, proc.stderr[-3000:]
    with Store.open(f"sqlite:///{home / 'spx.db'}") as store:
        assert [(s.name, s.status) for s in store.list_sweeps()] == [("pre", "COMPLETED")]


def test_the_schemes_known_without_mlflow_are_mlflows_own():
    from mlflow.tracking._tracking_service.utils import _tracking_store_registry

    assert set(_tracking_store_registry._registry) == MLFLOW_SCHEMES | DATABASE_SCHEMES


@pytest.mark.parametrize(
    "uri", ["sqlite:////nowhere/yet/mlflow.db", "http://127.0.0.1:1", "file:///tmp/x", "/tmp/x"]
)
def test_a_backend_mlflow_will_create_or_a_server_is_not_refused(uri):
    check_backend(uri)  # no error: MLflow makes the file; a server may come back (sync)
