"""tracking.RunQueue: the trial runs' MLflow work, sent by its own thread, merged per run
when it piles up, on a real MLflow (SQLite) backend.

What a user sees: every trial's run has its params, metrics, tags, config artifact and end
state, however far MLflow fell behind; a backlog costs three MLflow calls per short trial
(create, one log_batch, the end; its config artifact is a file in the run's local artifact
folder), not one per event; and an error outside MLflow reaches the driver.
"""

from __future__ import annotations

import threading
from collections import Counter
from pathlib import Path

import pytest

from spx.platform.tracking import RunOpen, RunQueue, Tracker


def _counted(tracker: Tracker) -> Counter[str]:
    """Count the MLflow client calls the tracker makes (the real client does the work)."""
    calls: Counter[str] = Counter()
    for name in ("create_run", "log_batch", "log_text", "set_terminated", "update_run"):
        real = getattr(tracker.client, name)

        def counted(*args, _real=real, _name=name, **kwargs):
            calls[_name] += 1
            return _real(*args, **kwargs)

        setattr(tracker.client, name, counted)
    return calls


def _trial(queue: RunQueue, exp: str, parent: str, number: int) -> None:
    """One short trial's whole life, as the trial loop asks it over three turns."""
    work = queue.work(number)
    work.open = RunOpen(exp, f"trial-{number}", parent, {"spx.trial": str(number)})
    work.params.update({"train.lr": 0.01 * (number + 1), "model.width": 16})
    work.texts.append(('{"train": {}}', "trial_config.json"))
    queue.hand_over()
    queue.metrics(number, [(1, "val/loss", 0.5 + number), (1, "val/acc", 0.9)])
    queue.hand_over()
    end = queue.work(number)
    end.tags["spx.status"] = "PRUNED"
    end.end = "FINISHED"
    queue.hand_over()


def test_a_backlog_is_merged_and_every_run_is_complete(tmp_path: Path) -> None:
    tracker = Tracker(f"sqlite:///{tmp_path / 'mlflow.db'}", tmp_path / "artifacts")
    exp = tracker.experiment("queue")
    parent = tracker.start_run(exp, "queue", {})
    assert exp is not None and parent is not None
    calls = _counted(tracker)
    stored: dict[int, str] = {}
    first_batch, backlog_ready = threading.Event(), threading.Event()

    def on_created(ids: dict[int, str]) -> None:  # the driver stores the ids here
        stored.update(ids)
        first_batch.set()
        backlog_ready.wait(30)  # MLflow "falls behind" while the loop goes on

    queue = RunQueue(tracker, on_created)
    queue.work(0).open = RunOpen(exp, "trial-0", parent)
    queue.hand_over()
    assert first_batch.wait(30)
    calls.clear()
    for number in (1, 2, 3):
        _trial(queue, exp, parent, number)
    backlog_ready.set()
    queue.close()

    assert sorted(stored) == [0, 1, 2, 3]
    # Three trials' nine turns of work: three calls each (the config artifact is a file
    # written into the run's local artifact folder, listed below).
    assert calls == {"create_run": 3, "log_batch": 3, "set_terminated": 3}
    for number in (1, 2, 3):
        run = tracker.client.get_run(stored[number])
        assert run.info.status == "FINISHED"
        assert run.info.run_name == f"trial-{number}"
        assert run.data.params == {"train.lr": str(0.01 * (number + 1)), "model.width": "16"}
        assert run.data.metrics == {"val/loss": 0.5 + number, "val/acc": 0.9}
        assert run.data.tags["mlflow.parentRunId"] == parent
        assert run.data.tags["spx.status"] == "PRUNED"
        files = [f.path for f in tracker.client.list_artifacts(stored[number])]
        assert files == ["trial_config.json"]


def test_an_error_outside_mlflow_reaches_the_driver(tmp_path: Path) -> None:
    tracker = Tracker(f"sqlite:///{tmp_path / 'mlflow.db'}", tmp_path / "artifacts")
    exp = tracker.experiment("queue")
    assert exp is not None

    def on_created(ids: dict[int, str]) -> None:
        raise OSError("the store's disk is full")

    queue = RunQueue(tracker, on_created)
    queue.work(0).open = RunOpen(exp, "trial-0")
    queue.hand_over()
    with pytest.raises(OSError, match="disk is full"):
        queue.close()
