"""The Optuna study lives beside the results store, and a rebuilt strategy continues it."""

from __future__ import annotations

import optuna
import pytest
import sqlalchemy as sa

from spx.platform.store import Store
from spx.search.base import Outcome
from spx.search.space import FloatRange
from spx.search.strategies import StrategyContext, build_strategy
from spx.search.study_storage import study_storage_url


def test_urls():
    assert study_storage_url(None) is None
    assert study_storage_url("sqlite:///:memory:") is None
    assert study_storage_url("sqlite:////h/spx.db") == "sqlite:////h/spx-optuna.db"
    pg = study_storage_url("postgresql+psycopg://u:pw@db/x?options=-csearch_path%3Dabc")
    assert pg == "postgresql+psycopg://u:pw@db/x?options=-csearch_path%3Dabc_optuna"


@pytest.mark.parametrize(
    "backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def test_one_study_per_sweep_beside_the_store(backend, request, tmp_path):
    store_url = (
        f"sqlite:///{tmp_path / 'spx.db'}"
        if backend == "sqlite"
        else request.getfixturevalue("postgres_url")
    )
    Store.open(store_url).close()  # the store's tables exist first, as in a real sweep
    url = study_storage_url(store_url)
    ctx = StrategyContext({"x": FloatRange(0, 1)}, 3, 0, storage_url=url, study_name="sw-a")
    first = build_strategy("tpe", ctx)
    s = first.ask()
    first.tell(s.number, 0.5, Outcome.COMPLETED)
    again = build_strategy("tpe", ctx)
    assert again.ask() == s
    assert [x.number for x in (again.ask(), again.ask())] == [1, 2]
    assert again.ask() is None
    study = optuna.load_study(study_name="sw-a", storage=url)
    assert [t.state.name for t in study.trials] == ["COMPLETE", "RUNNING", "RUNNING"]
    with Store.open(store_url) as store:
        assert store.list_sweeps() == []  # the store's own tables are untouched
    if backend == "postgres":
        _drop_optuna_schema(request.getfixturevalue("postgres_base_url"), url)


def _drop_optuna_schema(admin_url: str, url: str) -> None:
    schema = sa.make_url(url).query["options"].split("search_path=")[1]  # type: ignore[union-attr]
    optuna.storages.RDBStorage(url).engine.dispose()
    engine = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(sa.text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
    engine.dispose()


def test_a_sqlite_study_is_in_wal_mode_so_a_reader_never_blocks_the_driver(tmp_path):
    import sqlite3

    from spx.search.study_storage import open_storage

    url = study_storage_url(f"sqlite:///{tmp_path / 'spx.db'}")
    study = optuna.create_study(storage=open_storage(url), study_name="s")
    trial = study.ask()
    reader = sqlite3.connect(tmp_path / "spx-optuna.db", timeout=0.1)
    try:
        reader.execute("BEGIN")
        assert reader.execute("SELECT count(*) FROM trials").fetchone() == (1,)
        # a dashboard holding a read transaction open: the driver still commits at once
        trial.suggest_float("x", 0.0, 1.0)
        study.tell(trial, 0.5)
        assert reader.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    finally:
        reader.close()
    assert study.trials[0].value == 0.5
