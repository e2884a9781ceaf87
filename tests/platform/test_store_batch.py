"""``Store.batch``: a driver turn's writes for many trials in one transaction and a few
statements, on SQLite and (when it answers) PostgreSQL.

What a user relies on: rows written in a batch are all there after it, none of them when
it fails; the last value of a field or a metric wins, as with one write at a time; and the
cost of a turn does not grow with the trials in it (counted here in SQL statements, the
driver's per-trial cost at 10 000 trials: benchmarks/bench_scale.py).
"""

from __future__ import annotations

import pytest
from sqlalchemy import event

from spx.errors import NotFoundError, StoreError
from spx.platform.store import Store, TrialStatus


def _sweep(store: Store, name: str = "b"):
    return store.create_sweep(name, task="t", method="random", spec_text="", spec_hash="h")


def _turn(store: Store, sweep_id: int, numbers: range) -> None:
    """One turn of the trial loop for ``numbers``: started, reported, finished."""
    with store.batch():
        rows = [store.add_trial(sweep_id, n, {"train.lr": 0.1 * n}) for n in numbers]
        for row in rows:
            store.update_trial(row.id, status=TrialStatus.RUNNING, attempt=1, started=True)
    with store.batch():
        for row in rows:
            store.update_trial(row.id, node_id="n1", heartbeat=True)
            store.upsert_metrics(row.id, [(1, "val/loss", 2.0), (1, "val/loss", 1.0 + row.number)])
            store.update_trial(row.id, step=1, heartbeat=True)
            store.update_trial(
                row.id, status=TrialStatus.COMPLETED, metrics={"val/loss": 1.0}, finished=True
            )


def test_a_batch_writes_every_trial_and_the_last_value_wins(store: Store) -> None:
    sweep = _sweep(store)
    _turn(store, sweep.id, range(30))
    trials = store.trials(sweep.id)
    assert [t.number for t in trials] == list(range(30))
    for t in trials:
        assert (t.status, t.attempt, t.step, t.node_id) == ("COMPLETED", 1, 1, "n1")
        assert t.metrics == {"val/loss": 1.0}
        assert t.started_at is not None and t.finished_at is not None
        assert t.heartbeat_at is not None
        assert store.metric_history([t.id]) == [(t.id, 1, "val/loss", 1.0 + t.number)]


def test_a_failed_batch_writes_nothing(store: Store) -> None:
    sweep = _sweep(store)
    kept = store.add_trial(sweep.id, 0, {})
    with pytest.raises(RuntimeError), store.batch():
        store.add_trial(sweep.id, 1, {})
        store.update_trial(kept.id, status=TrialStatus.RUNNING)
        store.upsert_metrics(kept.id, [(0, "val/loss", 1.0)])
        raise RuntimeError("the driver fell over mid-turn")
    assert [(t.number, t.status.value) for t in store.trials(sweep.id)] == [(0, "PENDING")]
    assert store.metric_history([kept.id]) == []


def test_a_missing_trial_in_a_batch_is_named_and_nothing_is_written(store: Store) -> None:
    sweep = _sweep(store)
    real = store.add_trial(sweep.id, 0, {})
    with pytest.raises(NotFoundError, match="not in the store"), store.batch():
        store.update_trial(real.id, status=TrialStatus.RUNNING)
        store.update_trial(real.id + 1000, status=TrialStatus.RUNNING)
    assert store.trials(sweep.id)[0].status == "PENDING"
    with pytest.raises((NotFoundError, StoreError)), store.batch():
        store.upsert_metrics(real.id + 1000, [(0, "val/loss", 1.0)])
    assert store.count_metrics(real.id) == 0


def test_a_turn_costs_the_same_statements_for_5_or_50_trials(store: Store) -> None:
    statements: list[str] = []
    event.listen(store.engine, "before_cursor_execute", lambda *args: statements.append(args[2]))
    counts = []
    for i, n in enumerate((5, 50)):
        statements.clear()
        _turn(store, _sweep(store, f"s{i}").id, range(n))
        # The trials' own INSERTs are one each; everything else is per turn.
        counts.append(
            sum(not s.lstrip().upper().startswith("INSERT INTO TRIALS") for s in statements)
        )
    assert counts[0] == counts[1], counts
