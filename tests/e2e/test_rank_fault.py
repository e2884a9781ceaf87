"""A multi-worker trial loses one rank mid-training (SIGKILL): the whole group stops at
once, the trial runs again from every rank's checkpoint (weights, masks, error-feedback
buffers, outer state) and finishes with its full history, nothing counted twice."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from helpers import spx_exe

from spx.platform.store import Store

pytestmark = pytest.mark.e2e

SWEEP = """
name: rank-kill
task: digits-mlp
fixed: {train.steps: 800, train.report_every: 50, train.checkpoint_every: 100,
        model.width: 64, comm.strategy: sparseloco, comm.inner_steps: 10,
        comm.timeout_s: 60, prune.method: magnitude, prune.sparsity: 0.8,
        prune.schedule.start: 0.0, prune.schedule.end: 0.5, prune.schedule.every: 50}
resources: {concurrent: 1, workers_per_trial: 2, cpus_per_worker: 0.5}
retries: 1
"""


def _trial(root: Path):
    with contextlib.suppress(Exception):
        store = Store.open(f"sqlite:///{root / 'home' / 'spx.db'}")
        return store.trials(store.get_sweep("rank-kill").id)[0]
    return None


def test_killing_one_rank_reruns_the_group_from_its_checkpoints(tmp_path):
    (tmp_path / "s.yaml").write_text(SWEEP)
    proc = subprocess.Popen(
        [spx_exe(), "sweep", "launch", "s.yaml", "--plain"],
        cwd=tmp_path,
        env={**os.environ, "SPX_HOME": str(tmp_path / "home")},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            trial = _trial(tmp_path)
            if trial is not None and (trial.step or 0) >= 300:
                break
            time.sleep(0.2)
        else:
            raise AssertionError("the trial never reached step 300")
        pid_file = next((tmp_path / "home" / "checkpoints").glob("*/trial-00000/worker-rank1.pid"))
        os.kill(int(pid_file.read_text()), signal.SIGKILL)
        out, _ = proc.communicate(timeout=600)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)
    assert proc.returncode == 0, out
    assert "LOST" in out
    store = Store.open(f"sqlite:///{tmp_path / 'home' / 'spx.db'}")
    [trial] = store.trials(store.get_sweep("rank-kill").id)
    assert trial.status == "COMPLETED" and trial.attempt == 2
    assert trial.metrics["model/sparsity"] == pytest.approx(0.8, abs=0.005)
    assert trial.metrics["comm/bytes_sent"] > 0
    rows = store.metric_history([trial.id])
    steps = {step for _, step, name, _ in rows if name == "val/loss"}
    assert set(range(50, 801, 50)) <= steps
    keys = [(step, name) for _, step, name, _ in rows]
    assert len(keys) == len(set(keys))
