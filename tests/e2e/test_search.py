"""End to end: Optuna samplers, multi-objective fronts and early termination via `spx`."""

from __future__ import annotations

import json
from pathlib import Path

import optuna
import pytest
from helpers import run_spx

from spx.platform.store import Store

pytestmark = pytest.mark.e2e

STEPS = 300
ASHA = f"""
name: e2e-asha
task: digits-mlp
method: grid
# Wide enough that a trial outlasts the driver's round trip (a report, a decision, a stop).
fixed: {{train.steps: {STEPS}, train.report_every: 20, model.width: 512, model.depth: 3,
        train.batch_size: 256}}
parameters:
  train.lr: {{values: [0.03, 0.02, 1.0e-6, 2.0e-6]}}
early_stop: {{type: asha, grace: 40, reduction: 2}}
resources: {{concurrent: 2}}
"""

PARETO = """
name: e2e-pareto
task: digits-mlp
method: nsga2
seed: 1
trials: 4
objective: [{metric: val/acc, goal: maximize}, {metric: model/params, goal: minimize}]
fixed: {train.steps: 60, train.report_every: 30, model.width: 32, train.lr: 0.02,
        prune.method: magnitude, prune.schedule.start: 0.0, prune.schedule.end: 0.5}
parameters:
  prune.sparsity: {min: 0.0, max: 0.95}
resources: {concurrent: 2}
"""


def _launch(tmp_path: Path, text: str):
    (tmp_path / "sweep.yaml").write_text(text)
    env = {"SPX_HOME": str(tmp_path / "home")}
    proc = run_spx("sweep", "launch", "sweep.yaml", "--plain", cwd=tmp_path, env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    store = Store.open(f"sqlite:///{tmp_path / 'home' / 'spx.db'}")
    return env, store


def test_asha_stops_the_bad_half_early_and_keeps_what_they_learned(tmp_path):
    _, store = _launch(tmp_path, ASHA)
    trials = store.trials(store.get_sweep("e2e-asha").id)
    good, bad = trials[:2], trials[2:]
    assert [t.status for t in bad] == ["PRUNED", "PRUNED"], [(t.status, t.step) for t in trials]
    assert all(t.step is not None and t.step < STEPS for t in bad)
    assert all("val/loss" in (t.metrics or {}) for t in bad)  # final metrics are kept
    # ASHA may also stop the lesser of two good trials that meet at a rung: never both.
    assert "COMPLETED" in {t.status for t in good}
    assert {t.status for t in good} <= {"COMPLETED", "PRUNED"}
    history = store.metric_history([bad[0].id], ["val/loss"])
    assert max(step for _, step, _, _ in history) == bad[0].step


def test_nsga2_runs_one_optuna_study_beside_the_store_and_shows_the_front(tmp_path):
    env, store = _launch(tmp_path, PARETO)
    trials = store.trials(store.get_sweep("e2e-pareto").id)
    assert [t.status for t in trials] == ["COMPLETED"] * 4
    storage = f"sqlite:///{tmp_path / 'home' / 'spx-optuna.db'}"
    study = optuna.load_study(study_name="e2e-pareto", storage=storage)
    assert [t.state.name for t in study.trials] == ["COMPLETE"] * 4
    for row, ot in zip(trials, study.trials, strict=True):
        assert row.params["prune.sparsity"] == pytest.approx(ot.params["prune.sparsity"])
        assert ot.values == [row.metrics["val/acc"], row.metrics["model/params"]]

    show = run_spx("sweep", "show", "e2e-pareto", "--pareto", "--json", cwd=tmp_path, env=env)
    assert show.returncode == 0, show.stderr
    front = json.loads(show.stdout)["trials"]
    points = {t["number"]: (t["metrics"]["val/acc"], t["metrics"]["model/params"]) for t in front}
    every = {t.number: (t.metrics["val/acc"], t.metrics["model/params"]) for t in trials}
    assert points and set(points) <= set(every)
    for number, (acc, params) in every.items():
        dominated = any(
            a >= acc and p <= params and (a, p) != (acc, params) for a, p in every.values()
        )
        assert (number in points) == (not dominated)
    table = run_spx("sweep", "show", "e2e-pareto", "--pareto", cwd=tmp_path, env=env)
    assert table.returncode == 0 and "val/acc" in table.stdout


def test_a_categorical_for_cmaes_exits_2_naming_the_key(tmp_path):
    (tmp_path / "bad.yaml").write_text(
        "name: bad\ntask: digits-mlp\nmethod: cmaes\n"
        "parameters: {prune.method: {values: [none, magnitude]},\n"
        "             train.lr: {min: 0.001, max: 0.1}}\n"
    )
    proc = run_spx("sweep", "launch", "bad.yaml", cwd=tmp_path, env={"SPX_HOME": str(tmp_path)})
    assert proc.returncode == 2
    assert "parameters.prune.method" in proc.stderr and "CMA-ES" in proc.stderr
    assert not (tmp_path / "spx.db").exists()
