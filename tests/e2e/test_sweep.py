"""End to end: the installed `spx` launches real sweeps on a local Ray, SQLite and MLflow."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from helpers import run_spx
from mlflow.tracking import MlflowClient

from spx.platform.paths import file_name
from spx.platform.store import Store

pytestmark = pytest.mark.e2e

SWEEP = """
name: e2e-{tag}
task: digits-mlp
method: grid
fixed: {{train.steps: 80, train.report_every: 20, model.width: 32,
        prune.schedule.start: 0.0, prune.schedule.end: 0.5, prune.schedule.every: 5}}
parameters:
  prune:
    values:
      - {{method: none}}
      - {{method: magnitude, sparsity: 0.5}}
      - {{method: magnitude, sparsity: 0.9}}
resources: {{concurrent: 2}}
"""


@pytest.fixture(scope="module")
def launched(tmp_path_factory):
    root = tmp_path_factory.mktemp("e2e")
    env = {"SPX_HOME": str(root / "home")}
    (root / "sweep.yaml").write_text(SWEEP.format(tag="grid"))
    proc = run_spx("sweep", "launch", "sweep.yaml", "--plain", cwd=root, env=env)
    return root, env, proc


def _store(root: Path) -> Store:
    return Store.open(f"sqlite:///{root / 'home' / 'spx.db'}")


def test_launch_prints_the_best_trial_and_where_to_look(launched):
    _, _, proc = launched
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "best trial" in proc.stdout
    assert "spx ui" in proc.stdout
    report = proc.stdout.split("report: ", 1)[1].split("\n", 1)[0].strip()
    assert report.endswith(f"{file_name('e2e-grid')}.html") and "plotly" in Path(report).read_text()
    assert "spx sweep show e2e-grid" in proc.stdout


def test_store_has_every_trial_with_its_target_sparsity(launched):
    root, _, _ = launched
    store = _store(root)
    sweep = store.get_sweep("e2e-grid")
    trials = store.trials(sweep.id)
    assert sweep.status == "COMPLETED"
    assert [t.status for t in trials] == ["COMPLETED"] * 3
    for t in trials:
        target = t.params["prune.sparsity"]
        assert t.metrics["model/sparsity"] == pytest.approx(target, abs=0.005)
        history = store.metric_history([t.id], ["val/loss"])
        assert [step for _, step, _, _ in history][-1] == 80
        assert store.count_metrics(t.id) > 4 * 10
    dense, sparse = trials[0].metrics, trials[2].metrics
    assert sparse["model/params"] < dense["model/params"]
    assert dense["model/params_avg"] == dense["model/params"]
    # the workers' warm-up (Task.prepare) cached the data once for every later process
    assert (root / "home" / "data" / "digits.npz").is_file()


def test_mlflow_has_a_parent_run_and_one_child_per_trial(launched):
    root, _, _ = launched
    client = MlflowClient(tracking_uri=f"sqlite:///{root / 'home' / 'mlflow.db'}")
    exp = client.get_experiment_by_name("e2e-grid")
    runs = client.search_runs([exp.experiment_id])
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert len(parents) == 1 and len(children) == 3
    assert {c.data.tags["mlflow.parentRunId"] for c in children} == {parents[0].info.run_id}
    assert all(r.info.status == "FINISHED" for r in runs)
    child = next(c for c in children if c.data.params["prune.sparsity"] == "0.9")
    history = client.get_metric_history(child.info.run_id, "model/sparsity")
    assert max(m.step for m in history) == 80
    assert max(m.value for m in history) == pytest.approx(0.9, abs=0.005)
    artifacts = {a.path for a in client.list_artifacts(child.info.run_id)}
    assert "trial_config.json" in artifacts
    assert "layer_density.json" in artifacts  # per-layer density at every pruning step
    local = client.download_artifacts(child.info.run_id, "layer_density.json", str(root))
    table = json.loads(Path(local).read_text())
    rows = [dict(zip(table["columns"], row, strict=True)) for row in table["data"]]
    last = [r for r in rows if r["step"] == max(r["step"] for r in rows)]
    assert sum(r["nnz"] for r in last) / sum(r["numel"] for r in last) == pytest.approx(
        0.1, abs=0.005
    )
    assert "sweep.yaml" in {a.path for a in client.list_artifacts(parents[0].info.run_id)}


def test_read_commands(launched):
    root, env, _ = launched
    show = run_spx("sweep", "show", "e2e-grid", "--json", cwd=root, env=env)
    data = json.loads(show.stdout)
    assert [t["number"] for t in data["trials"]] == [0, 1, 2]
    assert data["trials"][2]["params"]["prune.method"] == "magnitude"
    assert data["trials"][2]["metrics"]["model/sparsity"] == pytest.approx(0.9, abs=0.005)
    status = json.loads(run_spx("sweep", "status", "e2e-grid", "--json", cwd=root, env=env).stdout)
    assert status["counts"] == {"COMPLETED": 3}
    listed = json.loads(run_spx("sweep", "list", "--json", cwd=root, env=env).stdout)
    assert [s["name"] for s in listed] == ["e2e-grid"]
    exported = run_spx("sweep", "export", "e2e-grid", "-o", "out.csv", cwd=root, env=env)
    assert exported.returncode == 0
    rows = list(csv.DictReader((root / "out.csv").open()))
    assert [r["params.prune.sparsity"] for r in rows] == ["0.0", "0.5", "0.9"]
    assert float(rows[1]["metrics.val/acc"]) > 0.3


def test_a_duplicate_name_exits_2_and_writes_nothing(launched):
    root, env, _ = launched
    proc = run_spx("sweep", "launch", "sweep.yaml", "--plain", cwd=root, env=env)
    assert proc.returncode == 2
    assert "name" in proc.stderr and "e2e-grid" in proc.stderr
    assert len(_store(root).list_sweeps()) == 1


def test_an_unknown_sweep_exits_2(launched):
    root, env, _ = launched
    proc = run_spx("sweep", "show", "nope", cwd=root, env=env)
    assert proc.returncode == 2
    assert "nope" in proc.stderr and "e2e-grid" in proc.stderr


def test_a_nan_trial_fails_and_the_sweep_goes_on(tmp_path):
    here = Path(__file__).parent
    spec = """
name: e2e-nan
task: nan_task:NaNAtWidth13
fixed: {train.steps: 30, train.report_every: 10}
parameters:
  model.width: {values: [13, 16]}
"""
    (tmp_path / "nan.yaml").write_text(spec)
    env = {"SPX_HOME": str(tmp_path / "home"), "PYTHONPATH": str(here)}
    proc = run_spx("sweep", "launch", "nan.yaml", "--plain", cwd=tmp_path, env=env)
    assert proc.returncode == 3, proc.stdout + proc.stderr
    store = Store.open(f"sqlite:///{tmp_path / 'home' / 'spx.db'}")
    trials = store.trials(store.get_sweep("e2e-nan").id)
    assert [t.status for t in trials] == ["FAILED", "COMPLETED"]
    assert "train/loss is nan at step 1" in trials[0].error
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'home' / 'mlflow.db'}")
    run = client.get_run(trials[0].mlflow_run_id)
    assert run.info.status == "FAILED"
