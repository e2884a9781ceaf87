"""End to end, two stages: the installed `spx` trains sweep ``pre`` on a local Ray, then
sweep ``post`` starts from its best trial (``init.from: {sweep: pre, trial: best}``). The
lineage is in the store, in MLflow (params and tags) and in `spx sweep show`; the second
stage's trial trained from the first's exported weights (one step at lr 1e-9, so its
weights are the source's, and its masks held the source's zeros)."""

from __future__ import annotations

import json

import pytest
import torch
from helpers import run_spx
from mlflow.tracking import MlflowClient
from safetensors.torch import load_file

from spx.platform import lineage
from spx.platform.export import export_trial
from spx.platform.settings import Settings
from spx.platform.store import Store

pytestmark = pytest.mark.e2e

PRE = """
name: pre
task: digits-mlp
method: grid
objective: {metric: val/loss, goal: minimize}
fixed: {train.steps: 20, train.report_every: 10, model.width: 16, prune.method: magnitude,
        prune.sparsity: 0.5, prune.schedule.kind: one-shot}
parameters:
  train.lr: {values: [0.001, 0.02]}
resources: {concurrent: 2}
"""
POST = """
name: post
task: digits-mlp
method: grid
fixed:
  init.from: {sweep: pre, trial: best}
  train.steps: 1
  train.lr: 1.0e-9
  model.width: 16
  prune.method: magnitude
  prune.sparsity: 0.5
  prune.schedule.kind: one-shot
resources: {concurrent: 1}
"""


@pytest.fixture(scope="module")
def stages(tmp_path_factory):
    root = tmp_path_factory.mktemp("lineage")
    env = {"SPX_HOME": str(root / "home")}
    (root / "pre.yaml").write_text(PRE)
    (root / "post.yaml").write_text(POST)
    first = run_spx("sweep", "launch", "pre.yaml", "--plain", cwd=root, env=env)
    assert first.returncode == 0, first.stdout + first.stderr
    second = run_spx("sweep", "launch", "post.yaml", "--plain", cwd=root, env=env)
    assert second.returncode == 0, second.stdout + second.stderr
    settings = Settings(root / "home", f"sqlite:///{root / 'home' / 'spx.db'}", "", None)
    return root, env, settings


def _rows(settings: Settings, name: str):
    with Store.open(settings.store_url) as store:
        sweep = store.get_sweep(name)
        return sweep, store.trials(sweep.id)


def test_the_second_stage_trains_from_the_first_stages_best_weights(stages, tmp_path):
    _, _, settings = stages
    pre, sources = _rows(settings, "pre")
    post, (trial,) = _rows(settings, "post")
    best = min(sources, key=lambda t: t.metrics["val/loss"])
    p = trial.params
    assert (p["init.sweep"], p["init.trial"]) == ("pre", best.number)
    assert p["init.config_hash"] == lineage.config_hash(best.params)
    folder = lineage.cache_folder(settings, pre, best.number)
    assert p["init.folder"] == str(folder)
    assert p["init.sha256"] == lineage.file_sha256(folder / "model.safetensors")

    source = load_file(str(folder / "model.safetensors"))
    export_trial(settings, post, trial, tmp_path / "post-model")
    trained = load_file(str(tmp_path / "post-model" / "model.safetensors"))
    assert trained.keys() == source.keys()
    for name, weight in source.items():
        assert torch.allclose(trained[name], weight, atol=1e-6), name
        if name.endswith(".weight"):
            assert torch.equal(trained[name] == 0, weight == 0), name  # the masks held
    assert trial.metrics["model/sparsity"] == pytest.approx(0.5, abs=0.01)


def test_mlflow_has_the_lineage_as_params_and_tags(stages):
    root, _, settings = stages
    client = MlflowClient(tracking_uri=f"sqlite:///{root / 'home' / 'mlflow.db'}")
    exp = client.get_experiment_by_name("post")
    runs = client.search_runs([exp.experiment_id])
    (child,) = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    (parent,) = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    _, (trial,) = _rows(settings, "post")
    for run in (child, parent):
        assert run.data.tags["spx.init.sweep"] == "pre"
        assert run.data.tags["spx.init.trial"] == str(trial.params["init.trial"])
        assert run.data.tags["spx.init.sha256"] == trial.params["init.sha256"]
        assert run.data.tags["spx.init.config_hash"] == trial.params["init.config_hash"]
    assert child.data.params["init.sha256"] == trial.params["init.sha256"]


def test_show_says_where_the_weights_came_from(stages):
    root, env, settings = stages
    _, (trial,) = _rows(settings, "post")
    shown = run_spx("sweep", "show", "post", cwd=root, env=env)
    assert shown.returncode == 0, shown.stderr
    line = f"starts from sweep 'pre' trial {trial.params['init.trial']}: config "
    assert line in shown.stderr
    assert trial.params["init.sha256"][:12] in shown.stderr
    assert shown.stdout.splitlines()[0].startswith("trial\tstatus")  # the pipe: the table only
    data = json.loads(run_spx("sweep", "show", "post", "--json", cwd=root, env=env).stdout)
    assert data["lineage"][0]["init.sha256"] == trial.params["init.sha256"]
