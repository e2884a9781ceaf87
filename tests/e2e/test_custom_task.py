"""A custom task (``task: module:Class``) beside its sweep file runs without PYTHONPATH."""

from __future__ import annotations

import textwrap

import pytest
from helpers import run_spx

from spx.platform.store import Store

pytestmark = pytest.mark.e2e

TASK = textwrap.dedent(
    """
    from spx.workers.tasks import DigitsMLP


    class WideDigits(DigitsMLP):
        \"\"\"digits-mlp, found only through the sweep file's folder.\"\"\"
    """
)
SWEEP = """
name: e2e-custom-task
task: h8_tasks.wide:WideDigits
fixed: {train.steps: 20, train.report_every: 10}
"""


def test_a_task_beside_the_sweep_file_runs_in_the_driver_and_the_workers(tmp_path):
    folder = tmp_path / "project"
    (folder / "h8_tasks").mkdir(parents=True)
    (folder / "h8_tasks" / "__init__.py").write_text("")
    (folder / "h8_tasks" / "wide.py").write_text(TASK)
    (folder / "sweep.yaml").write_text(SWEEP)
    elsewhere = tmp_path / "cwd"  # Ray puts the driver's cwd on the workers' path: not here
    elsewhere.mkdir()
    env = {"SPX_HOME": str(tmp_path / "home"), "PYTHONPATH": ""}
    proc = run_spx("sweep", "launch", str(folder / "sweep.yaml"), "--plain", cwd=elsewhere, env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    store = Store.open(f"sqlite:///{tmp_path / 'home' / 'spx.db'}")
    trials = store.trials(store.get_sweep("e2e-custom-task").id)
    assert [t.status for t in trials] == ["COMPLETED"]
