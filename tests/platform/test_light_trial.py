"""runner.light_trial: a custom task whose module offers a torch-free trial function runs
it in the worker instead of the training loop (what lets bench_scale.py and
test_shared_store.py put dozens of trials on two cores); any other task runs the loop."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from spx.platform.runner import light_trial

MODULE = """
LIGHT_TRIALS = {"Quick": lambda config, report: {"val/loss": config["train"]["lr"]}}
"""


@pytest.fixture
def task_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "quick_task.py").write_text(MODULE)
    (tmp_path / "heavy_task.py").write_text("class Heavy: pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path


def test_a_module_with_light_trials_names_its_function(task_folder: Path) -> None:
    fn = light_trial("quick_task:Quick")
    assert fn is not None
    assert fn({"train": {"lr": 0.5}}, lambda step, metrics: True) == {"val/loss": 0.5}


@pytest.mark.parametrize(
    "task", ["digits-mlp", "heavy_task:Heavy", "quick_task:Other", "no_such_module:X"]
)
def test_every_other_task_runs_the_loop(task_folder: Path, task: str) -> None:
    assert light_trial(task) is None


def test_the_benchmark_task_imports_no_torch() -> None:
    """benchmarks/sleep_task.py's worker side: its module and its light trial."""
    code = (
        "import sys; sys.path.insert(0, 'benchmarks'); import sleep_task; "
        "from spx.platform.runner import light_trial; "
        "print(light_trial('sleep_task:Nap') is sleep_task.nap, 'torch' in sys.modules)"
    )
    root = Path(__file__).resolve().parents[2]
    out = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True)
    assert out.stdout.split() == ["True", "False"], out.stderr
