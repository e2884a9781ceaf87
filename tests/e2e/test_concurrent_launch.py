"""End to end: `spx sweep launch` started several times at once on an empty SPX_HOME.

Every launch starts its own local Ray and opens the same fresh store and MLflow database;
their first-time set-up takes turns (platform/homelock.py). Launches of different names
all complete; of two with the same name one runs and the other exits 2, decided by the
store's unique name, and leaves nothing behind.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest
import sqlalchemy as sa
from helpers import TINY_SWEEP, run_spx, spx_exe
from mlflow.tracking import MlflowClient

from spx.platform.store import Store

pytestmark = pytest.mark.e2e


def _launch_at_once(root: Path, names: list[str]) -> list[subprocess.CompletedProcess]:
    env = {**os.environ, "SPX_HOME": str(root / "home")}
    for var in ("SPX_STORE_URL", "MLFLOW_TRACKING_URI", "RAY_ADDRESS"):
        env.pop(var, None)
    procs = [
        subprocess.Popen(
            [spx_exe(), "sweep", "launch", "tiny.yaml", "--name", name, "--plain"],
            cwd=root,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name in names
    ]
    done = []
    for name, proc in zip(names, procs, strict=True):
        out, err = proc.communicate(timeout=300)
        done.append(subprocess.CompletedProcess([name], proc.returncode, out, err))
    return done


def _check_home(home: Path, names: set[str]) -> None:
    """Each sweep COMPLETED once in the store and in MLflow, at MLflow's schema head, and no
    pid or temporary file left."""
    with Store.open(f"sqlite:///{home / 'spx.db'}") as store:
        sweeps = store.list_sweeps()
        assert sorted(s.name for s in sweeps) == sorted(names)
        assert {s.status for s in sweeps} == {"COMPLETED"}
        assert all([t.status for t in store.trials(s.id)] == ["COMPLETED"] for s in sweeps)
    uri = f"sqlite:///{home / 'mlflow.db'}"
    engine = sa.create_engine(uri)
    with engine.connect() as conn:
        versions = conn.execute(sa.text("SELECT version_num FROM alembic_version")).all()
    engine.dispose()
    from mlflow.store.db.utils import _get_latest_schema_revision

    assert versions == [(_get_latest_schema_revision(),)]
    client = MlflowClient(uri)
    for name in names:
        exp = client.get_experiment_by_name(name)
        runs = client.search_runs([exp.experiment_id])
        assert sorted(r.info.run_name for r in runs) == sorted([name, "trial-0"])
    assert not list((home / "run").glob("*")), list((home / "run").glob("*"))
    assert not [p for p in home.rglob("*") if p.name.endswith(".part")]


def test_three_launches_at_once_on_a_fresh_home(tmp_path):
    (tmp_path / "tiny.yaml").write_text(TINY_SWEEP)
    started = time.monotonic()
    a, b1, b2 = _launch_at_once(tmp_path, ["a", "b", "b"])
    print(f"3 launches at once: {time.monotonic() - started:.0f} s")
    assert a.returncode == 0, a.stderr[-3000:]
    assert sorted([b1.returncode, b2.returncode]) == [0, 2], b1.stderr[-2000:] + b2.stderr[-2000:]
    loser = b1 if b1.returncode == 2 else b2
    assert "a sweep with this name already exists" in loser.stderr
    assert "Traceback" not in loser.stderr
    _check_home(tmp_path / "home", {"a", "b"})


@pytest.mark.slow
def test_four_launches_at_once_then_the_home_still_works(tmp_path):
    (tmp_path / "tiny.yaml").write_text(TINY_SWEEP)
    results = _launch_at_once(tmp_path, ["a", "b", "c", "c"])
    codes: dict[str, list[int]] = {}
    for r in results:
        codes.setdefault(r.args[0], []).append(r.returncode)
    assert {name: sorted(c) for name, c in codes.items()} == {"a": [0], "b": [0], "c": [0, 2]}
    later = run_spx(
        "sweep",
        "launch",
        "tiny.yaml",
        "--name",
        "d",
        "--plain",
        cwd=tmp_path,
        env={"SPX_HOME": str(tmp_path / "home")},
    )
    assert later.returncode == 0, later.stderr[-3000:]
    _check_home(tmp_path / "home", {"a", "b", "c", "d"})
