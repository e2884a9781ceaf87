"""End to end: a multi-worker sweep (DDP, DiLoCo, SparseLoCo) through the installed `spx`."""

from __future__ import annotations

import pytest
from helpers import run_spx

from spx.platform.store import Store

pytestmark = pytest.mark.e2e

SWEEP = """
name: e2e-multiworker
task: digits-mlp
method: grid
fixed: {train.steps: 100, train.report_every: 25, model.width: 128,
        comm.inner_steps: 10, prune.method: magnitude, prune.sparsity: 0.5}
parameters:
  comm.strategy: {values: [ddp, sparseloco]}
resources: {concurrent: 2, workers_per_trial: 2, cpus_per_worker: 0.5}
"""


@pytest.fixture(scope="module")
def launched(tmp_path_factory):
    root = tmp_path_factory.mktemp("mw")
    env = {"SPX_HOME": str(root / "home")}
    (root / "sweep.yaml").write_text(SWEEP)
    proc = run_spx("sweep", "launch", "sweep.yaml", "--plain", cwd=root, env=env)
    return root, proc


def test_sparseloco_group_completes_with_compressed_bytes(launched):
    root, proc = launched
    assert proc.returncode == 0, proc.stdout + proc.stderr
    store = Store.open(f"sqlite:///{root / 'home' / 'spx.db'}")
    trials = store.trials(store.get_sweep("e2e-multiworker").id)
    assert [str(t.status) for t in trials] == ["COMPLETED", "COMPLETED"]
    history = store.metric_history([t.id for t in trials])
    names = {t.id: {name for tid, _, name, _ in history if tid == t.id} for t in trials}
    ddp, sparse = (names[t.id] for t in sorted(trials, key=lambda t: t.number))
    assert ddp == sparse and {"comm/bytes_sent", "comm/bytes_dense", "time/comm_s"} <= ddp
    final = next(t for t in trials if t.params["comm.strategy"] == "sparseloco").metrics
    assert final["comm/bytes_dense"] / final["comm/bytes_sent"] > 20
    assert final["model/sparsity"] == pytest.approx(0.5, abs=0.01)
    assert any((root / "home").glob("checkpoints/*/trial-*/checkpoint-rank1"))


def test_comm_keys_on_one_worker_are_bad_input(tmp_path):
    text = SWEEP.replace("workers_per_trial: 2", "workers_per_trial: 1")
    (tmp_path / "sweep.yaml").write_text(text)
    proc = run_spx("sweep", "validate", "sweep.yaml", cwd=tmp_path)
    assert proc.returncode == 2
    assert "comm.inner_steps" in proc.stdout + proc.stderr
