"""The analysis views and read-only SQL, on SQLite and PostgreSQL."""

from __future__ import annotations

import math

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
        run_query(store_url, "SELEC 1")
    with pytest.raises(ConfigError, match="empty"):
        run_query(store_url, "  ")


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
