"""The analysis views and read-only SQL, on SQLite and PostgreSQL."""

from __future__ import annotations

import math
import time

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.config import Config

from spx.dashboards.query import run_query
from spx.errors import ConfigError
from spx.platform.store import MIGRATIONS


def test_trial_summary_has_typed_final_metrics(seeded, store_url):
    df = run_query(
        store_url,
        "SELECT sweep, number, status, prune_method, prune_sparsity, prune_start, val_loss,"
        " val_acc, n_params, n_avg FROM trial_summary ORDER BY number",
    )
    assert df["sweep"].tolist() == ["demo"] * 4
    assert df["prune_method"].tolist() == ["none", "magnitude", "magnitude", "magnitude"]
    assert df["val_loss"].tolist()[:3] == [0.5, 0.6, 0.9]
    assert df["n_params"].tolist()[:3] == [100, 50, 10]
    assert df["prune_start"].tolist() == [0.25] * 4
    # Non-finite final metrics read as NULL, so aggregates skip them.
    assert df["val_loss"][3] is None or math.isnan(df["val_loss"][3])
    assert df["val_acc"][3] is None or math.isnan(df["val_acc"][3])


def test_metric_history_joins_sweep_and_trial_number(seeded, store_url):
    df = run_query(
        store_url,
        "SELECT trial, step, value FROM metric_history"
        " WHERE sweep = 'demo' AND name LIKE 'model/%' AND trial = 2 ORDER BY step",
    )
    assert df["step"].tolist() == [10, 20, 30]
    assert df["value"].tolist() == pytest.approx([0.3, 0.6, 0.9])


def test_best_loss_per_method_worked_query(seeded, store_url):
    df = run_query(
        store_url,
        "SELECT prune_method, min(val_loss) AS best FROM trial_summary"
        " WHERE status = 'COMPLETED' GROUP BY prune_method ORDER BY prune_method",
    )
    assert df.to_dict("list") == {"prune_method": ["magnitude", "none"], "best": [0.6, 0.5]}


@pytest.mark.parametrize(
    "sql",
    [
        "DELETE FROM trials",
        "UPDATE sweeps SET name = 'x'",
        "INSERT INTO metrics VALUES (1, 1, 'x', 1.0)",
        "CREATE TABLE sneaky (a integer)",
        "DROP VIEW trial_summary",
    ],
)
def test_write_statements_are_refused_and_change_nothing(seeded, store_url, sql):
    with pytest.raises(ConfigError, match="read-only"):
        run_query(store_url, sql)
    assert run_query(store_url, "SELECT count(*) AS n FROM trials")["n"][0] == 4


def test_bad_sql_is_a_config_error(seeded, store_url):
    with pytest.raises(ConfigError, match="rejected the query"):
        run_query(store_url, "SELECT FROM WHERE")
    with pytest.raises(ConfigError, match="rejected the query: 'selec' does not start a read"):
        run_query(store_url, "SELEC 1")
    with pytest.raises(ConfigError, match="empty"):
        run_query(store_url, "  ")


@pytest.mark.parametrize(
    "sql",
    [
        "/* why */ SELECT 1 AS a -- trailing\n;",
        "SELECT a FROM (SELECT 1 AS a) AS t UNION SELECT 2",
        "WITH x AS (SELECT 1 AS a) SELECT a FROM x",
        "VALUES (1)",
        "SELECT 'a;b' AS a",
        "SELECT 1 AS a WHERE 'delete' <> 'COPY'",
    ],
)
def test_reads_in_every_accepted_form_run(seeded, store_url, sql):
    df = run_query(store_url, sql)
    assert len(df) >= 1 and df.columns[0] in ("a", "column1")


def test_explain_and_table_run(seeded, store_url):
    explain = (
        "EXPLAIN QUERY PLAN SELECT * FROM trials"
        if "sqlite" in store_url
        else "EXPLAIN (FORMAT JSON) SELECT * FROM trials"
    )
    assert len(run_query(store_url, explain)) >= 1
    if "postgresql" in store_url:
        assert len(run_query(store_url, "TABLE trials")) == 4


def test_sql_reaches_the_driver_untouched(seeded, store_url):
    df = run_query(store_url, "SELECT 10 % 3 AS m, '%s' AS p, '%(x)s' AS q")
    assert df.to_dict("records") == [{"m": 1, "p": "%s", "q": "%(x)s"}]


def test_an_empty_result_keeps_its_columns(seeded, store_url):
    df = run_query(store_url, "SELECT number, status FROM trials WHERE number < 0")
    assert list(df.columns) == ["number", "status"] and len(df) == 0


def test_the_limit_cuts_rows_and_says_so(seeded, store_url):
    sql = "SELECT * FROM metric_history ORDER BY trial_id, step, name"
    cut = run_query(store_url, sql, limit=5)
    assert len(cut) == 5 and cut.attrs["truncated"] is True
    full = run_query(store_url, sql, limit=24)
    assert len(full) == 24 and full.attrs["truncated"] is False


def test_the_timeout_cancels_a_long_query(seeded, store_url):
    endless = (
        "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r) SELECT count(*) FROM r"
    )
    slow = endless if "sqlite" in store_url else "SELECT pg_sleep(20)"
    started = time.monotonic()
    with pytest.raises(ConfigError, match="--timeout: the query ran past 0.5 s"):
        run_query(store_url, slow, timeout_s=0.5)
    assert time.monotonic() - started < 5


@pytest.mark.parametrize(
    ("timeout_s", "limit", "field"),
    [(0, 10, "--timeout"), (True, 10, "--timeout"), (1.0, 0, "--limit"), (1.0, True, "--limit")],
)
def test_bad_bounds_are_config_errors(seeded, store_url, timeout_s, limit, field):
    with pytest.raises(ConfigError, match=field):
        run_query(store_url, "SELECT 1", timeout_s=timeout_s, limit=limit)


def test_downgrade_drops_the_views_and_upgrade_restores_them(seeded, store_url):
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with seeded.engine.begin() as conn:
        config.attributes["connection"] = conn
        command.downgrade(config, "0001")
    names = set(sa.inspect(seeded.engine).get_view_names())
    assert not names & {"trial_summary", "metric_history"}
    with seeded.engine.begin() as conn:
        config.attributes["connection"] = conn
        command.upgrade(config, "head")
    names = set(sa.inspect(seeded.engine).get_view_names())
    assert {"trial_summary", "metric_history"} <= names
