"""`spx sweep resume` of a sweep that completed is a no-op: one line, exit 0, no Ray, and
the sweep's row (started_at, finished_at above all) is left exactly as it was."""

from __future__ import annotations

import socket
from types import SimpleNamespace

import pytest
from helpers import TINY_SWEEP, run_spx

from spx.platform.lifecycle import nothing_to_resume
from spx.platform.store import Store, SweepStatus, TrialStatus

S, T = SweepStatus, TrialStatus


@pytest.mark.parametrize(
    ("sweep", "trials", "retry_failed", "expected"),
    [
        (S.COMPLETED, [T.COMPLETED, T.PRUNED, T.FAILED], False, True),
        (S.COMPLETED, [T.COMPLETED, T.FAILED], True, False),  # runs the failed one again
        (S.COMPLETED, [T.COMPLETED, T.LOST], False, False),
        (S.COMPLETED, [], False, True),
        (S.STOPPED, [T.COMPLETED], False, False),  # resuming is how a stopped sweep goes on
        (S.FAILED, [T.COMPLETED], False, False),
        (S.RUNNING, [T.COMPLETED, T.RUNNING], False, False),
    ],
)
def test_only_a_completed_sweep_with_nothing_left_is_done(sweep, trials, retry_failed, expected):
    rows = [SimpleNamespace(status=s) for s in trials]
    assert nothing_to_resume(SimpleNamespace(status=sweep), rows, retry_failed) is expected


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.e2e
def test_resume_of_a_completed_sweep_changes_nothing(tmp_path):
    home = tmp_path / "home"
    with Store.open(f"sqlite:///{home / 'spx.db'}") as store:
        sweep = store.create_sweep("tiny", task="digits-mlp", method="grid",
                                   spec_text=TINY_SWEEP, spec_hash="0")  # fmt: skip
        for number, status in enumerate([T.COMPLETED, T.PRUNED, T.FAILED]):
            trial = store.add_trial(sweep.id, number, {"prune.method": "none"})
            store.update_trial(trial.id, status=status, metrics={"val/loss": 0.5}, finished=True)
        store.update_sweep(sweep.id, status=S.COMPLETED, started=True, finished=True)
        before = (store.get_sweep("tiny"), store.trials(sweep.id))
    # Any Ray start would fail on this address: nothing listens there.
    env = {"SPX_HOME": str(home), "SPX_STORE_URL": "", "RAY_ADDRESS": f"127.0.0.1:{_closed_port()}"}
    proc = run_spx("sweep", "resume", "tiny", cwd=tmp_path, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == [
        "sweep tiny already completed (1 completed, 1 pruned, 1 failed of 3): nothing to "
        "resume (--retry-failed runs its 1 failed again)"
    ]
    with Store.open(f"sqlite:///{home / 'spx.db'}") as store:
        after = (store.get_sweep("tiny"), store.trials(sweep.id))
    assert after == before
    assert before[0].started_at is not None and before[0].finished_at is not None
    assert not (home / "mlflow.db").exists()  # no tracking was opened either
