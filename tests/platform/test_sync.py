"""`sync_sweep` against a real store and a real MLflow (SQLite): it fills in what MLflow
lacks, finds runs the store lost track of, never writes a point twice, and a second sync
writes nothing."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import mlflow_content
from mlflow.entities import Metric
from mlflow.tracking import MlflowClient

from spx.errors import TrackingError
from spx.platform import lifecycle
from spx.platform.settings import Settings
from spx.platform.store import Store, SweepStatus, TrialStatus
from spx.platform.sync import sync_sweep

SPEC = "name: synced\ntask: digits-mlp\nfixed: {train.steps: 100}\n"


@pytest.fixture
def settings(tmp_path: Path, store_url: str) -> Settings:
    return Settings(tmp_path / "home", store_url, f"sqlite:///{tmp_path / 'mlflow.db'}", None)


def _fill(store: Store) -> None:
    """A finished sweep: one trial of each ending, three reports each."""
    sweep = store.create_sweep("synced", task="digits-mlp", method="grid", spec_text=SPEC,
                               spec_hash="0" * 64)  # fmt: skip
    endings = [
        (TrialStatus.COMPLETED, None),
        (TrialStatus.FAILED, "TrialError: train/loss is nan at step 3"),
        (TrialStatus.PRUNED, lifecycle.CANCELLED),
        (TrialStatus.LOST, "its driver went away (last heartbeat 500 s ago)"),
    ]
    for number, (status, error) in enumerate(endings):
        trial = store.add_trial(sweep.id, number, {"train.seed": number, "model.width": 16})
        rows = [(s, name, s / 10 + number) for s in (10, 20, 30) for name in ("a", "b")]
        store.upsert_metrics(trial.id, rows)
        store.update_trial(trial.id, status=status, error=error, step=30, finished=True)
    store.update_sweep(sweep.id, status=SweepStatus.STOPPED, finished=True)


def test_sync_builds_mlflow_from_the_store_and_is_idempotent(store: Store, settings) -> None:
    _fill(store)
    first = sync_sweep(settings, "synced")
    assert (first.runs_created, first.metrics, first.statuses) == (5, 24, 5)
    content = mlflow_content(settings.tracking_uri, "synced")
    assert {name: c[0] for name, c in content.items()} == {
        "synced": "KILLED",
        "trial-0": "FINISHED",
        "trial-1": "FAILED",
        "trial-2": "KILLED",
        "trial-3": "KILLED",
    }
    status, params, tags, history = content["trial-1"]
    assert params == {"train.seed": "1", "model.width": "16"}
    assert tags["spx.error"].startswith("TrialError") and tags["spx.trial"] == "1"
    assert history == {
        "a": [(10, 2.0), (20, 3.0), (30, 4.0)],
        "b": [(10, 2.0), (20, 3.0), (30, 4.0)],
    }
    assert content["synced"][1]["fixed.train.steps"] == "100"
    assert all(t.mlflow_run_id for t in store.trials(store.get_sweep("synced").id))

    second = sync_sweep(settings, "synced")
    assert not second.changed
    assert mlflow_content(settings.tracking_uri, "synced") == content


def test_sync_finds_a_run_the_store_lost_and_adds_only_missing_points(store, settings) -> None:
    _fill(store)
    client = MlflowClient(tracking_uri=settings.tracking_uri)
    exp = client.create_experiment("synced", artifact_location=settings.artifacts.as_uri())
    # The driver had made trial 0's run and logged one point, then MLflow went away
    # before the store recorded the run's id.
    run = client.create_run(exp, run_name="trial-0", tags={"spx.sweep": "synced", "spx.trial": "0"})
    client.log_batch(run.info.run_id, metrics=[Metric("a", 1.0, 0, 10)])
    report = sync_sweep(settings, "synced")
    assert report.runs_created == 4 and report.metrics == 23
    content = mlflow_content(settings.tracking_uri, "synced")
    assert content["trial-0"][3]["a"] == [(10, 1.0), (20, 2.0), (30, 3.0)]
    trial0 = store.trials(store.get_sweep("synced").id)[0]
    assert trial0.mlflow_run_id == run.info.run_id


def test_sync_with_mlflow_unreachable_is_a_tracking_error(store, settings, monkeypatch) -> None:
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    _fill(store)
    nowhere = Settings(settings.home, settings.store_url, "http://127.0.0.1:9", None)
    with pytest.raises(TrackingError, match="MLflow at http://127.0.0.1:9 failed while syncing"):
        sync_sweep(nowhere, "synced")
