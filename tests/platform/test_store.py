"""The results store against real SQLite and PostgreSQL databases (see conftest.py)."""

from __future__ import annotations

import math
import multiprocessing
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory

from spx.errors import ConfigError, NotFoundError, SpxError, StoreError
from spx.platform.store import MIGRATIONS, Store, SweepStatus, TrialStatus
from spx.platform.store_models import Base

PARAMS = {
    "prune.method": "gmp",
    "prune.sparsity": 0.9,
    "model.width": 128,
    "model.depth": 3,
    "train.steps": 300,
    "train.lr": 0.01,
    "train.seed": 7,
    "comm.strategy": "sparseloco",
    "prune.schedule.start": 0.25,
}


def _sweep(store: Store, name: str = "digits-gmp"):
    return store.create_sweep(
        name, task="digits-mlp", method="grid", spec_text=f"name: {name}\n", spec_hash="a" * 64
    )


def _scalar(store: Store, sql: str, **params):
    with store.engine.connect() as conn:
        return conn.execute(sa.text(sql), params).scalar_one()


# -- schema -------------------------------------------------------------------------------


def test_migrations_create_tables_and_own_version_table(store: Store) -> None:
    tables = set(sa.inspect(store.engine).get_table_names())
    assert {"sweeps", "trials", "metrics", "spx_alembic_version"} <= tables
    assert "alembic_version" not in tables
    head = ScriptDirectory(str(MIGRATIONS)).get_current_head()
    assert _scalar(store, "SELECT version_num FROM spx_alembic_version") == head


def test_metrics_indexes_exist(store: Store) -> None:
    inspector = sa.inspect(store.engine)
    metric_ix = {ix["name"]: ix["column_names"] for ix in inspector.get_indexes("metrics")}
    trial_ix = {ix["name"]: ix["column_names"] for ix in inspector.get_indexes("trials")}
    assert metric_ix["ix_metrics_trial_id_name_step"] == ["trial_id", "name", "step"]
    assert trial_ix["ix_trials_sweep_id_status"] == ["sweep_id", "status"]


def test_orm_models_match_the_migrations(store: Store) -> None:
    with store.engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"version_table": "spx_alembic_version"})
        assert compare_metadata(context, Base.metadata) == []


def test_opening_twice_is_a_no_op(store_url: str) -> None:
    with Store.open(store_url) as first:
        _sweep(first)
    with Store.open(store_url) as second:
        assert [row.name for row in second.list_sweeps()] == ["digits-gmp"]
        assert _scalar(second, "SELECT count(*) FROM spx_alembic_version") == 1


def test_sqlite_pragmas_hold_on_a_fresh_connection(tmp_path) -> None:
    with Store.open(f"sqlite:///{tmp_path / 'new' / 'dir' / 'spx.db'}") as store:
        assert (tmp_path / "new" / "dir" / "spx.db").is_file()
        with store.engine.connect() as conn:
            pragma = lambda name: conn.exec_driver_sql(f"PRAGMA {name}").scalar()  # noqa: E731
            assert pragma("journal_mode") == "wal"
            assert pragma("foreign_keys") == 1
            assert pragma("busy_timeout") == 30000
            assert pragma("synchronous") == 1  # NORMAL


# -- sweeps -------------------------------------------------------------------------------


def test_create_and_get_sweep(store: Store) -> None:
    created = _sweep(store)
    got = store.get_sweep("digits-gmp")
    assert got == created
    assert got.status is SweepStatus.PENDING
    assert got.spec_hash == "a" * 64
    assert got.created_at.tzinfo is not None
    assert abs((datetime.now(UTC) - got.created_at).total_seconds()) < 60


def test_duplicate_sweep_name_is_a_config_error_and_writes_nothing(store: Store) -> None:
    _sweep(store)
    with pytest.raises(ConfigError) as info:
        _sweep(store)
    assert info.value.field == "name"
    assert info.value.value == "digits-gmp"
    assert "name" in str(info.value) and "'digits-gmp'" in str(info.value)
    assert _scalar(store, "SELECT count(*) FROM sweeps") == 1


def test_missing_sweep_lists_known_names(store: Store) -> None:
    for i in range(12):
        _sweep(store, f"s{i:02d}")
    with pytest.raises(NotFoundError) as info:
        store.get_sweep("nope")
    message = str(info.value)
    assert "'nope'" in message
    assert "s11" in message and "s02" in message and "s01" not in message  # newest 10


def test_list_sweeps_newest_first(store: Store) -> None:
    for name in ("a", "b", "c"):
        _sweep(store, name)
    assert [row.name for row in store.list_sweeps()] == ["c", "b", "a"]


def test_update_sweep_status_ids_and_timestamps(store: Store) -> None:
    sweep = _sweep(store)
    store.update_sweep(sweep.id, status=SweepStatus.RUNNING, mlflow_experiment_id="7", started=True)
    running = store.get_sweep(sweep.name)
    assert running.status is SweepStatus.RUNNING
    assert running.mlflow_experiment_id == "7"
    assert running.started_at is not None and running.finished_at is None
    store.update_sweep(sweep.id, status=SweepStatus.COMPLETED, mlflow_run_id="r1", finished=True)
    done = store.get_sweep(sweep.name)
    assert (done.status, done.mlflow_experiment_id, done.mlflow_run_id) == (
        SweepStatus.COMPLETED,
        "7",
        "r1",
    )
    assert done.started_at == running.started_at
    assert done.finished_at is not None and done.finished_at >= done.started_at
    assert done.finished_at.utcoffset().total_seconds() == 0


def test_update_missing_rows_raises_not_found(store: Store) -> None:
    with pytest.raises(NotFoundError, match="sweep with id 999"):
        store.update_sweep(999, status=SweepStatus.FAILED)
    with pytest.raises(NotFoundError, match="trial with id 999"):
        store.update_trial(999, status=TrialStatus.FAILED)
    with pytest.raises(NotFoundError, match="sweep with id 999"):
        store.add_trial(999, 0, {})
    with pytest.raises(NotFoundError, match="trial with id 999"):
        store.upsert_metrics(999, [(0, "train/loss", 1.0)])


# -- trials -------------------------------------------------------------------------------


def test_add_trial_is_idempotent_and_fills_promoted_columns(store: Store) -> None:
    sweep = _sweep(store)
    first = store.add_trial(sweep.id, 0, PARAMS)
    again = store.add_trial(sweep.id, 0, {"prune.method": "rigl"})
    assert again == first
    assert first.params == PARAMS and first.status is TrialStatus.PENDING and first.attempt == 0
    assert _scalar(store, "SELECT count(*) FROM trials") == 1
    with store.engine.connect() as conn:
        row = conn.execute(
            sa.text(
                "SELECT prune_method, prune_sparsity, model_width, model_depth, train_steps,"
                " train_lr, train_seed, comm_strategy FROM trials WHERE id = :id"
            ),
            {"id": first.id},
        ).one()
    assert tuple(row) == ("gmp", 0.9, 128, 3, 300, 0.01, 7, "sparseloco")


def test_promoted_columns_stay_null_when_absent(store: Store) -> None:
    trial = store.add_trial(_sweep(store).id, 3, {"train.lr": "0.5"})
    assert _scalar(store, "SELECT train_lr FROM trials WHERE id = :id", id=trial.id) == 0.5
    assert _scalar(store, "SELECT model_width FROM trials WHERE id = :id", id=trial.id) is None


def test_bad_promoted_value_names_the_key(store: Store) -> None:
    with pytest.raises(ConfigError) as info:
        store.add_trial(_sweep(store).id, 0, {"model.width": "wide"})
    assert info.value.field == "model.width" and info.value.value == "wide"


def test_update_trial_fields_and_filter_by_status(store: Store) -> None:
    sweep = _sweep(store)
    trials = [store.add_trial(sweep.id, n, {"train.seed": n}) for n in (2, 0, 1)]
    store.update_trial(trials[1].id, status=TrialStatus.RUNNING, node_id="n1", started=True)
    store.update_trial(trials[1].id, step=50, heartbeat=True)
    store.update_trial(
        trials[1].id,
        status=TrialStatus.COMPLETED,
        attempt=1,
        metrics={"val/loss": 0.25, "val/acc": 0.9},
        mlflow_run_id="abc",
        finished=True,
    )
    store.update_trial(trials[0].id, status=TrialStatus.FAILED, error="loss went NaN")
    assert [t.number for t in store.trials(sweep.id)] == [0, 1, 2]
    assert [t.number for t in store.trials(sweep.id, TrialStatus.PENDING)] == [1]
    (done,) = store.trials(sweep.id, TrialStatus.COMPLETED)
    assert (done.number, done.attempt, done.step, done.node_id, done.mlflow_run_id) == (
        0,
        1,
        50,
        "n1",
        "abc",
    )
    assert done.metrics == {"val/loss": 0.25, "val/acc": 0.9}
    assert done.started_at <= done.heartbeat_at <= done.finished_at
    (failed,) = store.trials(sweep.id, TrialStatus.FAILED)
    assert (failed.number, failed.error, failed.metrics) == (2, "loss went NaN", None)


def test_trial_metrics_keep_nan_and_infinity(store: Store) -> None:
    trial = store.add_trial(_sweep(store).id, 0, {})
    store.update_trial(trial.id, metrics={"a": math.nan, "b": math.inf, "c": -math.inf})
    (row,) = store.trials(trial.sweep_id)
    assert math.isnan(row.metrics["a"])
    assert row.metrics["b"] == math.inf and row.metrics["c"] == -math.inf


# -- metrics ------------------------------------------------------------------------------


def test_upsert_metrics_twice_leaves_the_union_with_latest_values(store: Store) -> None:
    trial = store.add_trial(_sweep(store).id, 0, {})
    first = [(0, "train/loss", 2.0), (10, "train/loss", 1.5), (10, "val/loss", 1.7)]
    second = [(10, "train/loss", 1.4), (20, "train/loss", 1.1), (20, "train/loss", 1.0)]
    assert store.upsert_metrics(trial.id, first) == 3
    assert store.upsert_metrics(trial.id, second) == 2  # (20, train/loss) given twice
    assert store.count_metrics(trial.id) == 4
    assert store.metric_history([trial.id]) == [
        (trial.id, 0, "train/loss", 2.0),
        (trial.id, 10, "train/loss", 1.4),
        (trial.id, 20, "train/loss", 1.0),
        (trial.id, 10, "val/loss", 1.7),
    ]


def test_upsert_metrics_large_batch_in_chunks(store: Store) -> None:
    trial = store.add_trial(_sweep(store).id, 0, {})
    rows = [(step, name, step * 0.5) for step in range(617) for name in ("a", "b")]
    assert store.upsert_metrics(trial.id, rows) == 1234
    assert store.upsert_metrics(trial.id, rows[:700]) == 700
    assert store.count_metrics(trial.id) == 1234
    assert store.metric_history([trial.id], ["b"])[-1] == (trial.id, 616, "b", 308.0)
    assert store.upsert_metrics(trial.id, []) == 0


def test_metric_values_keep_nan_and_infinity(store: Store) -> None:
    trial = store.add_trial(_sweep(store).id, 0, {})
    store.upsert_metrics(trial.id, [(0, "x", math.nan), (1, "x", math.inf), (2, "x", -math.inf)])
    values = [v for _, _, _, v in store.metric_history([trial.id])]
    assert math.isnan(values[0]) and values[1:] == [math.inf, -math.inf]


def test_metric_history_filters_by_trials_and_names(store: Store) -> None:
    sweep = _sweep(store)
    one, two, three = (store.add_trial(sweep.id, n, {}) for n in range(3))
    for trial in (one, two, three):
        store.upsert_metrics(
            trial.id,
            [(s, n, trial.number + s / 10) for s in (2, 1) for n in ("loss", "acc", "nnz")],
        )
    history = store.metric_history([three.id, one.id], names=["loss", "acc"])
    assert history == [
        (one.id, 1, "acc", 0.1),
        (one.id, 2, "acc", 0.2),
        (one.id, 1, "loss", 0.1),
        (one.id, 2, "loss", 0.2),
        (three.id, 1, "acc", 2.1),
        (three.id, 2, "acc", 2.2),
        (three.id, 1, "loss", 2.1),
        (three.id, 2, "loss", 2.2),
    ]
    assert store.metric_history([two.id], names=[]) == []
    assert store.metric_history([]) == []
    assert len(store.metric_history([one.id, two.id, three.id])) == 18


def test_deleting_a_sweep_cascades_to_trials_and_metrics(store: Store) -> None:
    keep, drop = _sweep(store, "keep"), _sweep(store, "drop")
    for sweep in (keep, drop):
        trial = store.add_trial(sweep.id, 0, {})
        store.upsert_metrics(trial.id, [(0, "loss", 1.0), (1, "loss", 0.5)])
    with store.engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM sweeps WHERE id = :id"), {"id": drop.id})
    assert _scalar(store, "SELECT count(*) FROM trials") == 1
    assert _scalar(store, "SELECT count(*) FROM metrics") == 2
    assert [t.sweep_id for t in store.trials(keep.id)] == [keep.id]


# -- errors and secrets -------------------------------------------------------------------


def test_unreachable_postgres_error_hides_the_password() -> None:
    url = "postgresql+psycopg://bob:hunter2@127.0.0.1:1/spx"
    with pytest.raises(StoreError) as info:
        Store.open(url)
    message = str(info.value)
    assert "hunter2" not in message
    assert "bob:***@127.0.0.1:1/spx" in message
    assert info.value.__cause__ is None


def test_unsupported_backend_is_a_config_error() -> None:
    with pytest.raises(ConfigError) as info:
        Store.open("mysql+pymysql://bob:hunter2@localhost/spx")
    assert info.value.field == "store" and "hunter2" not in str(info.value)


def test_repr_hides_the_password() -> None:
    url = "postgresql+psycopg://bob:hunter2@db.example:5432/spx"
    store = Store(url, sa.create_engine("sqlite://"))
    assert store.url == url
    assert repr(store) == "Store('postgresql+psycopg://bob:***@db.example:5432/spx')"


# -- concurrency --------------------------------------------------------------------------


def _hammer(url: str, trial_id: int, worker: int, n: int) -> list[str]:
    """Runs in a spawned process: n upserts, each with a private row and a shared one."""
    errors: list[str] = []
    with Store.open(url) as store:
        for step in range(n):
            rows = [(step, f"w{worker}", float(step)), (step, "shared", float(worker))]
            try:
                store.upsert_metrics(trial_id, rows)
            except SpxError as exc:
                errors.append(f"{type(exc).__name__}: {exc}")
    return errors


def _open_and_count(url: str) -> int:
    with Store.open(url) as store:
        return len(store.list_sweeps())


def test_four_processes_upsert_concurrently(store: Store) -> None:
    trial = store.add_trial(_sweep(store).id, 0, {})
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(4) as pool:
        results = pool.starmap(_hammer, [(store.url, trial.id, w, 200) for w in range(4)])
    assert [e for errors in results for e in errors] == []
    assert store.count_metrics(trial.id) == 4 * 200 + 200
    shared = store.metric_history([trial.id], ["shared"])
    assert [step for _, step, _, _ in shared] == list(range(200))
    assert {value for *_, value in shared} <= {0.0, 1.0, 2.0, 3.0}


def test_four_processes_open_a_fresh_store_at_once(store_url: str) -> None:
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(4) as pool:
        assert pool.map(_open_and_count, [store_url] * 4) == [0, 0, 0, 0]
    with Store.open(store_url) as store:
        assert _scalar(store, "SELECT count(*) FROM spx_alembic_version") == 1
