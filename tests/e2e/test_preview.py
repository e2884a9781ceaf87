"""`spx sweep validate` shows the configs launch then runs, for every method family.

Each case validates a tiny sweep, launches it for real (local Ray, a SQLite store) and
compares the printed trials with the params the store holds: a shown value must be the one
that ran, and a trial that depends on results must be said to, not given made-up values.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from helpers import run_spx

from spx.platform.store import Store

pytestmark = pytest.mark.e2e

SWEEP = """
name: preview-{method}
task: digits-mlp
method: {method}
seed: 3
trials: 3
fixed: {{train.steps: 10, train.report_every: 5, model.width: 16}}
parameters:
  train.lr: {axis}
resources: {{concurrent: 1}}
"""
RANGE = "{min: 1.0e-4, max: 3.0e-2, log: true}"
VALUES = "{values: [0.001, 0.01, 0.1]}"
# method -> how many of the 3 trials are decided before any result
KNOWN = {"grid": 3, "random": 3, "tpe": 3, "nsga2": 3, "cmaes": 1, "qmc": 1}


def _shown(stdout: str) -> dict[int, str]:
    """``trial N: ...`` lines of validate's output, by N."""
    found = (re.fullmatch(r"trial (\d+): (.*)", line.strip()) for line in stdout.splitlines())
    return {int(m[1]): m[2] for m in found if m}


# tpe is the case the old preview got wrong, cmaes the labelled one; the rest under test-all.
FAST = {"tpe", "cmaes"}


@pytest.mark.parametrize(
    "method", [m if m in FAST else pytest.param(m, marks=pytest.mark.slow) for m in sorted(KNOWN)]
)
def test_validate_shows_what_launch_runs(method, tmp_path: Path, monkeypatch):
    axis = VALUES if method == "grid" else RANGE
    (tmp_path / "s.yaml").write_text(SWEEP.format(method=method, axis=axis))
    env = {"SPX_HOME": str(tmp_path / "home")}
    for var in ("SPX_STORE_URL", "MLFLOW_TRACKING_URI", "RAY_ADDRESS"):
        monkeypatch.delenv(var, raising=False)
    shown = run_spx("sweep", "validate", "s.yaml", cwd=tmp_path, env=env)
    assert shown.returncode == 0, shown.stderr
    assert not (tmp_path / "home").exists()  # validate writes nothing, no Optuna study either
    lines = _shown(shown.stdout)
    assert sorted(lines) == [0, 1, 2], shown.stdout
    ran = run_spx("sweep", "launch", "s.yaml", "--plain", cwd=tmp_path, env=env)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    with Store.open(f"sqlite:///{tmp_path / 'home' / 'spx.db'}") as store:
        trials = store.trials(store.get_sweep(f"preview-{method}").id)
    params = {t.number: t.params for t in trials}
    for number, line in lines.items():
        if number < KNOWN[method]:
            key, value = line.split("=")
            assert key == "train.lr"
            assert json.loads(value) == params[number]["train.lr"], (number, line)
        else:
            assert line == f"chosen by {method} from the results of earlier trials"
