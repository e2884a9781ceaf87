"""One store, many users: two sweeps launched at once from two processes (`spx sweep
launch`, each from its own SPX_HOME, as from two shells of two users) against one
PostgreSQL store and one Ray cluster; one of them is TPE, whose Optuna study lives in the
same database. Both complete with every trial row and its metrics, their trials ran at the
same time, and neither driver met a lock or serialization error.

The trials are light (benchmarks/sleep_task.py's ``Nap``: a worker sleeps and reports once,
never importing torch), so the test is about the drivers' writes, not training. The cluster
is started here with ``ray.cluster_utils.Cluster`` in a temporary folder of its own, every
port chosen free; it does not record itself where another process's ``ray.init()`` could
find it.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from helpers import REPO, spx_exe

from spx.platform.store import Store

pytestmark = [pytest.mark.postgres, pytest.mark.e2e]

TRIALS = 16
SWEEP = """\
name: {name}
task: sleep_task:Nap
method: {method}
seed: {seed}
trials: {trials}
objective: {{metric: val/loss, goal: minimize}}
fixed: {{model.width: 16, model.depth: 1}}
parameters:
  train.lr: {{min: 1.0e-4, max: 1.0e-1, log: true}}
resources: {{concurrent: 4, cpus_per_worker: 1}}
"""
# What a driver must never print: a lock wait that gave up, a serialization failure, an
# MLflow call that failed ("MLflow log batch failed: ...", "3 MLflow calls failed or were
# skipped"), any traceback.
TROUBLE = re.compile(
    r"deadlock|could not serialize|database is locked|lock ?timeout|locknotavailable"
    r"|serializationfailure|failed:|calls failed|traceback",
    re.IGNORECASE,
)


@pytest.fixture
def shared_store(postgres_url: str, postgres_base_url: str) -> Iterator[str]:
    """The test's schema; the TPE study's schema beside it is dropped afterwards too."""
    yield postgres_url
    options = sa.make_url(postgres_url).query["options"]
    schema = str(options).partition("search_path=")[2]
    admin = sa.create_engine(postgres_base_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP SCHEMA IF EXISTS "{schema}_optuna" CASCADE'))
    admin.dispose()


@pytest.fixture
def ray_cluster(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A one-node Ray cluster of 8 logical CPUs; its address."""
    import ray._private.utils
    from ray.cluster_utils import Cluster

    monkeypatch.setattr(ray._private.utils, "write_ray_address", lambda *a, **k: None)
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")  # a private cluster: no token
    monkeypatch.setenv("SPX_BENCH_SLEEP_S", "1.0")  # the workers inherit the node's env
    temp = tempfile.mkdtemp(prefix="spxray-", dir="/tmp")  # short: socket paths
    head = {"num_cpus": 8, "include_dashboard": False, "temp_dir": temp}
    cluster = Cluster(initialize_head=True, head_node_args=head)
    try:
        yield cluster.address
    finally:
        cluster.shutdown()
        shutil.rmtree(temp, ignore_errors=True)


def _launch(root: Path, name: str, method: str, seed: int, store: str, address: str):
    """Start ``spx sweep launch`` of a sweep in its own folder and SPX_HOME."""
    folder = root / name
    folder.mkdir()
    shutil.copy(REPO / "benchmarks" / "sleep_task.py", folder)  # the task beside the file
    (folder / "sweep.yaml").write_text(
        SWEEP.format(name=name, method=method, seed=seed, trials=TRIALS)
    )
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    env.update({"SPX_HOME": str(folder / "home"), "SPX_STORE_URL": store, "RAY_ADDRESS": address})
    return subprocess.Popen(
        [spx_exe(), "sweep", "launch", "sweep.yaml", "--plain"],
        cwd=folder,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def test_two_sweeps_from_two_processes_share_one_store_and_cluster(
    tmp_path: Path, shared_store: str, ray_cluster: str
) -> None:
    procs = {
        "users-tpe": _launch(tmp_path, "users-tpe", "tpe", 0, shared_store, ray_cluster),
        "users-random": _launch(tmp_path, "users-random", "random", 1, shared_store, ray_cluster),
    }
    outputs = {name: proc.communicate(timeout=300)[0] for name, proc in procs.items()}
    for name, proc in procs.items():
        assert proc.returncode == 0, f"{name}:\n{outputs[name][-3000:]}"
        trouble = TROUBLE.findall(outputs[name])
        assert trouble == [], f"{name} printed {trouble}:\n{outputs[name][-3000:]}"

    spans = {}
    with Store.open(shared_store) as store:
        assert sorted(s.name for s in store.list_sweeps()) == sorted(procs)
        for name in procs:
            sweep = store.get_sweep(name)
            assert sweep.status == "COMPLETED"
            trials = store.trials(sweep.id)
            assert [t.number for t in trials] == list(range(TRIALS))
            assert {t.status for t in trials} == {"COMPLETED"}
            for t in trials:
                assert set(t.metrics or {}) >= {"val/loss", "val/acc"}, t
                assert t.mlflow_run_id is not None, t
                history = store.metric_history([t.id])
                assert sorted((step, n) for _, step, n, _ in history) == [
                    (1, "val/acc"),
                    (1, "val/loss"),
                ]
            spans[name] = (min(t.started_at for t in trials), max(t.finished_at for t in trials))
    # At the same time: each sweep had trials running before the other's last one ended.
    (a0, a1), (b0, b1) = spans.values()
    assert a0 < b1 and b0 < a1, spans
