"""benchmarks/gpu/run.sh --dry-run: every GPU step runs on tiny sizes, without the
orchestration packages the GPU machine lacks, and lands in one results file."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_the_gpu_script_dry_run_runs_every_step_into_one_results_file(tmp_path):
    env = {**os.environ, "OUT": str(tmp_path), "PYTHON": sys.executable}
    done = subprocess.run(
        ["bash", "benchmarks/gpu/run.sh", "--dry-run"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    results = (tmp_path / "gpu-results.md").read_text()
    assert done.returncode == 0, results + done.stdout + done.stderr
    for title in (
        "## Kernel tests",
        "## Worker conformance",
        "## SparseLoCo compress",
        "## 2:4 semi-structured matmul",
        "## Masked training step of code-gpt",
        "## Outer step over process groups",
    ):
        assert title in results
    assert "exit 0" in results and "exit 1" not in results
    assert "| nm 2:4 | 0.500 |" in results  # the 2:4 trial reached half its weights
    assert "| sparseloco | 2 | gloo |" in results
    assert "ModuleNotFoundError" not in results  # no step needed ray/mlflow/...


def test_a_step_that_needs_a_missing_package_fails_the_dry_run(tmp_path):
    """The guard is what makes the dry run prove the GPU machine can run the steps."""
    guard = ROOT / "benchmarks" / "gpu" / "guard"
    env = {**os.environ, "PYTHONPATH": f"{guard}{os.pathsep}{ROOT}"}
    done = subprocess.run(
        [sys.executable, "-c", "import spx.platform.store"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode != 0
    assert "absent on the GPU machine" in done.stderr
