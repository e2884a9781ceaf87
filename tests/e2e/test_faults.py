"""Real processes, real signals: nothing a trial reported is lost or counted twice."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from pathlib import Path

import pytest
from helpers import run_spx, spx_exe, wait_for
from mlflow.tracking import MlflowClient

from spx.platform.store import Store

pytestmark = pytest.mark.e2e

LONG = """
name: {name}
task: digits-mlp
fixed: {{train.steps: {steps}, train.report_every: 50, train.checkpoint_every: 100,
        model.width: 64, prune.method: magnitude, prune.sparsity: 0.9,
        prune.schedule.start: 0.0, prune.schedule.end: 0.5, prune.schedule.every: 50}}
parameters: {{train.seed: {{values: {seeds}}}}}
resources: {{concurrent: 2}}
retries: 1
"""


def _launch(root: Path, name: str, seeds: list[int], steps: int) -> subprocess.Popen:
    (root / "s.yaml").write_text(LONG.format(name=name, seeds=seeds, steps=steps))
    env = {**os.environ, "SPX_HOME": str(root / "home")}
    return subprocess.Popen(
        [spx_exe(), "sweep", "launch", "s.yaml", "--plain"],
        cwd=root,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
        # Ctrl-C's default action, even when this runner inherited SIGINT ignored (a
        # background job of a non-interactive shell ignores it, and so would spx).
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )


def _store(root: Path) -> Store:
    return Store.open(f"sqlite:///{root / 'home' / 'spx.db'}")


def _trials(root: Path, name: str):
    db = root / "home" / "spx.db"
    if not db.exists():
        return []
    try:
        store = _store(root)
        return store.trials(store.get_sweep(name).id)
    except Exception:
        return []


def _assert_complete_history(store: Store, trial, steps: int) -> None:
    """Every report step has every metric exactly once (the key makes twice impossible)."""
    rows = store.metric_history([trial.id])
    by_step: dict[int, set[str]] = {}
    for _, step, name, _ in rows:
        by_step.setdefault(step, set()).add(name)
    names = by_step[steps]
    assert set(range(50, steps + 1, 50)) <= set(by_step)
    assert all(by_step[s] == names for s in range(50, steps + 1, 50))
    assert len(rows) == sum(len(v) for v in by_step.values())


def _cleanup(proc: subprocess.Popen) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=60)


def test_killing_a_trial_worker_resumes_it_from_its_checkpoint(tmp_path):
    proc = _launch(tmp_path, "kill-worker", [0], steps=3000)
    try:
        wait_for(lambda: any((t.step or 0) >= 400 for t in _trials(tmp_path, "kill-worker")))
        pid_file = next((tmp_path / "home" / "checkpoints").glob("*/trial-00000/worker.pid"))
        os.kill(int(pid_file.read_text()), signal.SIGKILL)
        out, _ = proc.communicate(timeout=400)
    finally:
        _cleanup(proc)
    assert proc.returncode == 0, out
    assert "LOST" in out
    store = _store(tmp_path)
    [trial] = store.trials(store.get_sweep("kill-worker").id)
    assert trial.status == "COMPLETED" and trial.attempt == 2
    assert trial.metrics["model/sparsity"] == pytest.approx(0.9, abs=0.005)
    _assert_complete_history(store, trial, 3000)


def test_killing_the_driver_then_resume_runs_every_trial_exactly_once(tmp_path):
    proc = _launch(tmp_path, "kill-driver", [0, 1, 2, 3], steps=2500)
    try:
        wait_for(lambda: sum((t.step or 0) >= 300 for t in _trials(tmp_path, "kill-driver")) >= 2)
        os.kill(proc.pid, signal.SIGKILL)  # the driver alone: its trials are orphaned
        proc.wait(timeout=60)
    finally:
        _cleanup(proc)
    before = {t.number: t.status for t in _trials(tmp_path, "kill-driver")}
    assert "RUNNING" in before.values()
    env = {"SPX_HOME": str(tmp_path / "home")}
    resumed = run_spx("sweep", "resume", "kill-driver", "--plain", cwd=tmp_path, env=env)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    store = _store(tmp_path)
    sweep = store.get_sweep("kill-driver")
    trials = store.trials(sweep.id)
    assert [t.number for t in trials] == [0, 1, 2, 3]
    assert all(t.status == "COMPLETED" for t in trials)
    for t in trials:
        assert t.metrics["model/sparsity"] == pytest.approx(0.9, abs=0.005)
        _assert_complete_history(store, t, 2500)
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'home' / 'mlflow.db'}")
    runs = client.search_runs([sweep.mlflow_experiment_id])
    assert len(runs) == 5  # the parent and one child per trial, none duplicated
    assert {r.info.status for r in runs} == {"FINISHED"}


def test_ctrl_c_leaves_nothing_running_and_resume_finishes(tmp_path):
    proc = _launch(tmp_path, "interrupted", [0, 1, 2], steps=2500)
    try:
        wait_for(lambda: any((t.step or 0) >= 300 for t in _trials(tmp_path, "interrupted")))
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=120)
    finally:
        _cleanup(proc)
    assert proc.returncode == 130, out
    store = _store(tmp_path)
    sweep = store.get_sweep("interrupted")
    assert sweep.status == "STOPPED"
    assert "RUNNING" not in {t.status for t in store.trials(sweep.id)}
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'home' / 'mlflow.db'}")
    assert "RUNNING" not in {
        r.info.status for r in client.search_runs([sweep.mlflow_experiment_id])
    }
    env = {"SPX_HOME": str(tmp_path / "home")}
    resumed = run_spx("sweep", "resume", "interrupted", "--plain", cwd=tmp_path, env=env)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    trials = store.trials(sweep.id)
    assert [t.status for t in trials] == ["COMPLETED"] * 3
    for t in trials:
        _assert_complete_history(store, t, 2500)
