"""What a retried or resumed trial leaves behind: one journal record per (step, metric), the
latest; no error once it completed; one MLflow run, even when a driver died between
creating the run and storing its id. Real files, a real store, MLflow on SQLite."""

from __future__ import annotations

from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from spx.platform import lifecycle
from spx.platform.runner import JOURNAL, InboxReporter, read_journal, write_report
from spx.platform.settings import Settings
from spx.platform.store import Store, TrialStatus
from spx.platform.tracking import Tracker

SPEC = "name: rec\ntask: digits-mlp\n"


def _sweep(store: Store):
    return store.create_sweep(
        "rec", task="digits-mlp", method="grid", spec_text=SPEC, spec_hash="0" * 64
    )


def _two_attempts(trial_dir: Path) -> None:
    """Attempt 1 reports steps 10-30 and dies writing 40; attempt 2 resumes from its
    checkpoint at step 20 and reports 30 and 40 again (another time per step)."""
    trial_dir.mkdir(parents=True, exist_ok=True)
    for step in (10, 20, 30):
        write_report(trial_dir / JOURNAL, step, {"val/loss": 1.0 / step, "time/step_s": 1.0})
    with (trial_dir / JOURNAL).open("a") as fh:
        fh.write('{"step": 40, "metrics": {"val/lo')  # torn: the process died mid-write
    InboxReporter(None, 0, 2, trial_dir)  # a new attempt's reporter (it only opens the file)
    for step in (30, 40):
        write_report(trial_dir / JOURNAL, step, {"val/loss": 1.0 / step, "time/step_s": 2.0})


def test_the_journal_keeps_one_record_per_step_and_metric_the_latest(tmp_path):
    _two_attempts(tmp_path / "trial")
    assert len((tmp_path / "trial" / JOURNAL).read_text().splitlines()) == 6  # 5 + the torn
    assert read_journal(tmp_path / "trial") == [
        (10, {"val/loss": 0.1, "time/step_s": 1.0}),
        (20, {"val/loss": 0.05, "time/step_s": 1.0}),
        (30, {"val/loss": 1 / 30, "time/step_s": 2.0}),
        (40, {"val/loss": 0.025, "time/step_s": 2.0}),
    ]


def test_replaying_a_restarted_trials_journal_stores_each_report_once(tmp_path):
    settings = Settings(tmp_path / "home", f"sqlite:///{tmp_path / 'spx.db'}", "", None)
    with Store.open(settings.store_url) as store:
        sweep = _sweep(store)
        trial = store.add_trial(sweep.id, 0, {"train.seed": 0})
        _two_attempts(lifecycle.trial_dir(settings, sweep, 0))
        assert lifecycle.replay_journal(store, settings, sweep, trial) == 8
        rows = store.metric_history([trial.id], ["time/step_s"])
        assert [(step, value) for _, step, _, value in rows] == [
            (10, 1.0),
            (20, 1.0),
            (30, 2.0),
            (40, 2.0),
        ]
        assert store.count_metrics(trial.id) == 8


def test_a_trial_that_completes_on_retry_keeps_no_error(store: Store):
    sweep = _sweep(store)
    trial = store.add_trial(sweep.id, 0, {"train.seed": 0})
    store.update_trial(trial.id, status=TrialStatus.RUNNING, attempt=1, started=True)
    store.update_trial(trial.id, status=TrialStatus.LOST, error="WorkerCrashedError: died")
    store.update_trial(trial.id, status=TrialStatus.RUNNING, attempt=2)
    assert store.trials(sweep.id)[0].error == "WorkerCrashedError: died"  # while it retries
    store.update_trial(trial.id, status=TrialStatus.COMPLETED, metrics={"a": 1.0}, finished=True)
    (done,) = store.trials(sweep.id)
    assert (done.status, done.error, done.attempt) == ("COMPLETED", None, 2)


def test_an_error_given_with_the_end_is_kept(store: Store):
    sweep = _sweep(store)
    for number, status in enumerate((TrialStatus.PRUNED, TrialStatus.FAILED)):
        trial = store.add_trial(sweep.id, number, {"train.seed": number})
        store.update_trial(trial.id, status=TrialStatus.LOST, error="interrupted")
        store.update_trial(trial.id, status=status, error=lifecycle.CANCELLED, finished=True)
    assert [t.error for t in store.trials(sweep.id)] == [lifecycle.CANCELLED] * 2
    other = store.add_trial(sweep.id, 2, {"train.seed": 2})
    store.update_trial(other.id, status=TrialStatus.LOST, error="interrupted")
    store.update_trial(other.id, step=5)  # an update that ends nothing leaves the error
    assert store.trials(sweep.id)[2].error == "interrupted"


@pytest.fixture
def tracker(tmp_path) -> Tracker:
    return Tracker(f"sqlite:///{tmp_path / 'mlflow.db'}", tmp_path / "mlartifacts")


def test_a_child_run_an_earlier_driver_created_is_found_not_duplicated(tracker):
    exp = tracker.experiment("rec")
    parent = tracker.start_run(exp, "rec", {}, tags={"spx.sweep": "rec"})
    # The dead driver created trial 0's run and died before logging its params or storing
    # its id: the store has no mlflow_run_id for the trial.
    tags = {"spx.sweep": "rec", "spx.trial": "0", "mlflow.parentRunId": parent}
    orphan = tracker.client.create_run(exp, run_name="trial-0", tags=tags).info.run_id
    params = {"train.seed": 0, "model.width": 16}
    identity = {"mlflow.parentRunId": parent, "spx.trial": "0"}
    again = tracker.start_run(exp, "trial-0", params, parent, tags, reuse=identity)
    assert again == orphan
    runs = tracker.client.search_runs([exp], "tags.`spx.trial` = '0'")
    assert [r.info.run_id for r in runs] == [orphan]
    assert runs[0].data.params == {"train.seed": "0", "model.width": "16"}
    # Found twice (the driver died again after logging the params): still one run.
    assert tracker.start_run(exp, "trial-0", params, parent, tags, reuse=identity) == orphan
    assert tracker.failures == 0


def test_reuse_only_takes_a_run_of_the_same_parent_and_trial(tracker):
    exp = tracker.experiment("rec")
    old_parent = tracker.start_run(exp, "rec", {})
    parent = tracker.start_run(exp, "rec", {})
    tracker.start_run(exp, "trial-0", {}, old_parent, {"spx.trial": "0"})
    tracker.start_run(exp, "trial-1", {}, parent, {"spx.trial": "1"})
    identity = {"mlflow.parentRunId": parent, "spx.trial": "0"}
    new = tracker.start_run(exp, "trial-0", {}, parent, {"spx.trial": "0"}, reuse=identity)
    client: MlflowClient = tracker.client
    assert len(client.search_runs([exp])) == 5  # two parents, three children
    assert client.get_run(new).data.tags["mlflow.parentRunId"] == parent
    with pytest.raises(ValueError, match="tag value"):
        tracker.find_run(exp, {"spx.sweep": "it's"})
