"""End to end: one sweep runs random-nas, DASS and OTO side by side on real Ray, and the
trials' models come back out with `spx sweep export-model`."""

from __future__ import annotations

import json

import pytest
import torch
from helpers import run_spx
from mlflow.tracking import MlflowClient

from spx.platform.export import load_model
from spx.platform.store import Store
from spx.workers import digits

pytestmark = pytest.mark.e2e

SWEEP = """
name: e2e-nas
task: digits-cnn
method: grid
objective: {metric: val/acc, goal: maximize}
fixed:
  train.steps: 40
  train.report_every: 20
  model.width: 8
  prune.sparsity: 0.5
  prune.schedule.start: 0.0
  prune.schedule.end: 0.5
  nas.candidates: 3
  nas.budget: 0.1
  nas.search_steps: 6
  nas.channels: 4
  nas.nodes: 2
  nas.cells: 1
parameters:
  variant:
    values:
      - {nas.method: random-nas, prune.method: nodes}
      - {nas.method: dass, prune.method: magnitude}
      - {prune.method: oto}
resources: {concurrent: 2}
"""


@pytest.fixture(scope="module")
def nas_sweep(tmp_path_factory):
    root = tmp_path_factory.mktemp("nas")
    env = {"SPX_HOME": str(root / "home")}
    (root / "nas.yaml").write_text(SWEEP)
    proc = run_spx("sweep", "launch", "nas.yaml", "--plain", cwd=root, env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    store = Store.open(f"sqlite:///{root / 'home' / 'spx.db'}")
    trials = {t.number: t for t in store.trials(store.get_sweep("e2e-nas").id)}
    return root, env, trials


def test_each_pipeline_completes_with_its_own_record(nas_sweep):
    _, _, trials = nas_sweep
    assert all(t.status == "COMPLETED" for t in trials.values())
    rs, dass, oto = trials[0].metrics, trials[1].metrics, trials[2].metrics
    assert rs["nas/candidates"] == 3 and rs["nas/search_steps"] == 3 * 4
    assert dass["nas/search_steps"] == 6 and dass["model/sparsity"] == pytest.approx(0.5, abs=0.01)
    # OTO's compact subnetwork: smaller, and exactly the pruned network's function
    assert oto["compact/params"] < oto["compact/params"] / oto["compact/params_ratio"]
    assert oto["compact/max_abs_diff"] <= 1e-5


def test_the_dass_trial_keeps_its_genotype(nas_sweep):
    root, _, _ = nas_sweep
    found = list((root / "home" / "checkpoints").glob("*/trial-00001/genotype.json"))
    assert len(found) == 1
    genotype = json.loads(found[0].read_text())
    assert len(genotype["normal"]) == 2 and all(len(node) == 2 for node in genotype["normal"])


@pytest.mark.parametrize("number", [1, 2])
def test_export_model_reproduces_the_trials_accuracy(nas_sweep, number):
    root, env, trials = nas_sweep
    out = root / f"model-{number}"
    proc = run_spx(
        "sweep",
        "export-model",
        "e2e-nas",
        "--trial",
        str(number),
        "-o",
        str(out),
        cwd=root,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr
    manifest = json.loads((out / "spx-model.json").read_text())
    model = load_model(out)
    _, val = digits.load()
    with torch.no_grad():
        acc = float((model(val.x).argmax(1) == val.y).float().mean())
    assert acc == pytest.approx(trials[number].metrics["val/acc"], abs=1e-6)
    if number == 2:  # oto: exported as the physically smaller network
        assert "compact subnetwork" in proc.stdout
        assert manifest["compact"]["params"] < manifest["full"]["params"]
    client = MlflowClient(f"sqlite:///{root / 'home' / 'mlflow.db'}")
    models = client.search_logged_models(
        experiment_ids=[client.get_experiment_by_name("e2e-nas").experiment_id]
    )
    assert f"e2e-nas-trial-{number}" in {m.name for m in models}
