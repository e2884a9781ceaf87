"""Helpers shared by tests: the repository root and the installed `spx` command."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
TESTS = REPO / "tests"

TINY_SWEEP = """
name: tiny
task: digits-mlp
method: grid
fixed: {train.steps: 10, train.report_every: 5, model.width: 16}
parameters:
  prune.method: {values: [none]}
resources: {concurrent: 1}
"""
"""One dense digits trial of ten steps: the smallest sweep that runs end to end."""


def load_test_module(relative: str, name: str):
    """Import ``tests/<relative>`` by path: test folders are not packages, so fixtures and
    literal data shared between folders are loaded this way."""
    spec = importlib.util.spec_from_file_location(name, TESTS / relative)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def spx_exe() -> str:
    found = Path(sys.executable).with_name("spx")
    return str(found) if found.exists() else (shutil.which("spx") or "spx")


def wait_for(predicate, timeout: float = 240.0, every: float = 0.3):
    """Poll ``predicate`` until it returns something truthy (returned), or fail."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    raise AssertionError("timed out waiting")


def run_spx(*args: str, cwd: Path, env: dict[str, str] | None = None, timeout: int = 600):
    """Run the installed `spx` in a subprocess; returns the CompletedProcess."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(
        [spx_exe(), *args], cwd=cwd, env=full_env, capture_output=True, text=True, timeout=timeout
    )


def mlflow_content(tracking_uri: str, experiment: str) -> dict:
    """Every run of an MLflow experiment as run name -> (status, params, spx.* tags, metric
    histories as sorted (step, value) lists): two snapshots compare equal when nothing changed.
    """
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri)
    found = client.get_experiment_by_name(experiment)
    content = {}
    for run in client.search_runs([found.experiment_id]) if found else []:
        history = {
            key: sorted((m.step, m.value) for m in client.get_metric_history(run.info.run_id, key))
            for key in run.data.metrics
        }
        tags = {k: v for k, v in run.data.tags.items() if k.startswith("spx.")}
        assert run.info.run_name not in content, f"two runs named {run.info.run_name}"
        content[run.info.run_name] = (run.info.status, run.data.params, tags, history)
    return content
