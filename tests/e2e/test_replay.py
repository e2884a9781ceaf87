"""`spx sweep replay` runs a sweep's exact configs again, as a new sweep."""

from __future__ import annotations

import pytest
from helpers import run_spx

from spx.platform.store import Store

pytestmark = pytest.mark.e2e

SWEEP = """
name: e2e-random
task: digits-mlp
method: random
seed: 7
trials: 3
fixed: {train.steps: 30, train.report_every: 10, model.width: 16}
parameters:
  train.lr: {min: 1.0e-3, max: 1.0e-2, log: true}
  prune.sparsity: {min: 0.2, max: 0.8}
  prune.method: {values: [magnitude, random]}
resources: {concurrent: 2}
"""


def test_replay_reruns_the_exact_configs_and_gets_the_same_results(tmp_path):
    env = {"SPX_HOME": str(tmp_path / "home")}
    (tmp_path / "s.yaml").write_text(SWEEP)
    first = run_spx("sweep", "launch", "s.yaml", "--plain", cwd=tmp_path, env=env)
    assert first.returncode == 0, first.stderr
    again = run_spx("sweep", "replay", "e2e-random", "--plain", cwd=tmp_path, env=env)
    assert again.returncode == 0, again.stdout + again.stderr
    store = Store.open(f"sqlite:///{tmp_path / 'home' / 'spx.db'}")
    original = store.trials(store.get_sweep("e2e-random").id)
    replayed = store.trials(store.get_sweep("e2e-random-replay").id)
    assert [t.params for t in replayed] == [t.params for t in original]
    # CPU training from the same seed is deterministic: the same numbers come back
    for a, b in zip(original, replayed, strict=True):
        assert b.metrics["val/loss"] == pytest.approx(a.metrics["val/loss"], rel=1e-6)
    assert (
        "replay of sweep e2e-random (method random, seed 7)"
        in store.get_sweep("e2e-random-replay").spec_text
    )
    dup = run_spx("sweep", "replay", "e2e-random", "--plain", cwd=tmp_path, env=env)
    assert dup.returncode == 2 and "e2e-random-replay" in dup.stderr
