"""Malformed sweep files exit 2, name the field and the value, and write nothing."""

from __future__ import annotations

import pytest
from helpers import run_spx

BASE = "name: bad\ntask: digits-mlp\n"

# A few cases through the installed binary; the full corpus is tests/e2e/bad_sweeps.
CASES = {
    "unknown-top-key": (BASE + "paramters: {}\n", "paramters", "did you mean 'parameters'"),
    "min-over-max": (
        BASE + "method: random\nparameters: {train.lr: {min: 0.1, max: 0.01}}\n",
        "parameters.train.lr",
        "min=0.1",
    ),
    "bad-yaml": (BASE + "fixed: {train.steps: [\n", "YAML", "line"),
    "empty-file": ("", "file", "mapping"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_sweep_file_exits_2_naming_the_field(case, tmp_path):
    text, field, detail = CASES[case]
    (tmp_path / "s.yaml").write_text(text)
    env = {"SPX_HOME": str(tmp_path / "home")}
    proc = run_spx("sweep", "launch", "s.yaml", cwd=tmp_path, env=env)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert field in proc.stderr and detail in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "home").exists()  # no store, no MLflow database, nothing


def test_validate_prints_the_trial_count_and_first_configs(tmp_path):
    (tmp_path / "s.yaml").write_text(
        BASE + "parameters: {prune.method: {values: [none, magnitude]}, "
        "prune.sparsity: {values: [0.5, 0.9]}}\n"
    )
    proc = run_spx("sweep", "validate", "s.yaml", cwd=tmp_path)
    assert proc.returncode == 0
    assert "4 trials" in proc.stdout
    assert "trial 1: prune.method=none, prune.sparsity=0.9" in proc.stdout
    dry = run_spx("sweep", "launch", "s.yaml", "--dry-run", cwd=tmp_path)
    assert dry.returncode == 0 and "4 trials" in dry.stdout
    assert not (tmp_path / ".spx").exists()


def test_schema_documents_the_trial_keys(tmp_path):
    import json

    proc = run_spx("sweep", "schema", cwd=tmp_path)
    schema = json.loads(proc.stdout)
    assert "prune.schedule.start" in schema["properties"]["fixed"]["propertyNames"]["enum"]
    assert set(schema["required"]) == {"name", "task"}
