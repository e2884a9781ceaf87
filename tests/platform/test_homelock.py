"""First-time set-up of MLflow and Optuna on a fresh SPX_HOME, by processes starting at once.

Each process waits for the same instant, then opens MLflow (which creates its tables and
runs its Alembic migrations on an empty database) and the Optuna storage, as a driver does.
Without ``setup_lock`` they race through MLflow's migrations (``Online migration expected
to match one row``, ``table _alembic_tmp_tags already exists``) and leave the database
half-migrated.
"""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from spx.errors import SpxError
from spx.platform.homelock import _PG_KEY, LOCK_FILE, setup_lock

OPEN_BACKENDS = textwrap.dedent(
    """
    import os, sys, time
    from pathlib import Path
    from spx.platform.homelock import setup_lock
    from spx.platform.tracking import Tracker
    from spx.search.study_storage import open_storage
    home, at, mlflow_uri, optuna_uri = Path(sys.argv[1]), float(sys.argv[2]), *sys.argv[3:]
    import mlflow.store.tracking.sqlalchemy_store, optuna  # the slow imports, before the start
    time.sleep(max(0.0, at - time.time()))
    with setup_lock(home, [mlflow_uri, optuna_uri]):
        tracker = Tracker(mlflow_uri, home / "mlartifacts")
        open_storage(optuna_uri).engine.dispose()
    print(tracker.experiment(f"exp-{os.getpid()}"))
    """
)


def _open_at_once(home: Path, mlflow_uri: str, optuna_uri: str, n: int = 3) -> list:
    start = time.time() + 8.0  # every process has imported MLflow and Optuna by then
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", OPEN_BACKENDS, str(home), str(start), mlflow_uri, optuna_uri],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(n)
    ]
    return [(p.wait(timeout=120), *p.communicate()) for p in procs]


def test_processes_opening_a_fresh_home_at_once_all_succeed(tmp_path):
    home = tmp_path / "home"
    mlflow_uri = f"sqlite:///{home / 'mlflow.db'}"
    optuna_uri = f"sqlite:///{home / 'spx-optuna.db'}"
    results = _open_at_once(home, mlflow_uri, optuna_uri)
    for code, out, err in results:
        assert code == 0, err[-3000:]
        assert out.strip(), err[-3000:]  # an experiment id: MLflow took a write
    # MLflow's schema is at its head, once, and every process's experiment is in it
    from mlflow.store.db.utils import _get_latest_schema_revision
    from mlflow.tracking import MlflowClient

    engine = sa.create_engine(mlflow_uri)
    with engine.connect() as conn:
        versions = conn.execute(sa.text("SELECT version_num FROM alembic_version")).all()
    engine.dispose()
    assert versions == [(_get_latest_schema_revision(),)]
    names = {e.name for e in MlflowClient(mlflow_uri).search_experiments()}
    assert len({n for n in names if n.startswith("exp-")}) == 3
    assert not list(home.glob("*.part")) and not list(home.glob(".*.part"))


def test_a_second_holder_waits_then_gives_up_with_the_lock_path(tmp_path):
    (tmp_path / LOCK_FILE).touch()
    fd = os.open(tmp_path / LOCK_FILE, os.O_RDWR)
    fcntl.flock(fd, fcntl.LOCK_EX)  # another process's set-up, still running
    try:
        started = time.monotonic()
        with (
            pytest.raises(SpxError, match=r"\.setup\.lock for over 0\.3 s"),
            setup_lock(tmp_path, wait_s=0.3),
        ):
            pass
        assert time.monotonic() - started >= 0.3
    finally:
        os.close(fd)
    with setup_lock(tmp_path, wait_s=0.3):  # free again once the holder is gone
        pass


@pytest.mark.postgres
def test_postgres_backends_are_locked_for_other_hosts_too(postgres_url, tmp_path):
    engine = sa.create_engine(postgres_url)
    try:
        with setup_lock(tmp_path, [postgres_url]), engine.connect() as conn:
            # another host's driver, on its own connection: it cannot take the set-up lock
            during = conn.execute(sa.text("SELECT pg_try_advisory_lock(:k)"), {"k": _PG_KEY})
            assert during.scalar_one() is False
        with engine.connect() as conn:
            after = conn.execute(sa.text("SELECT pg_try_advisory_lock(:k)"), {"k": _PG_KEY})
            assert after.scalar_one() is True
    finally:
        engine.dispose()
