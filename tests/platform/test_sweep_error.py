"""``sweeps.error`` (migration 0003): why a sweep FAILED, on both backends."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import command
from alembic.config import Config

from spx.platform.store import MIGRATIONS, Store, SweepStatus


def _sweep(store: Store, name: str = "s"):
    return store.create_sweep(name, task="digits-mlp", method="grid", spec_text="x", spec_hash="0")


def test_a_failed_sweep_keeps_its_reason_until_it_runs_again(store: Store) -> None:
    sweep = _sweep(store)
    reason = "SpxError: cannot write the driver's pid file (No space left on device)"
    store.update_sweep(sweep.id, status=SweepStatus.FAILED, finished=True, error=reason)
    assert (store.get_sweep("s").status, store.get_sweep("s").error) == ("FAILED", reason)
    store.update_sweep(sweep.id, mlflow_run_id="r1")  # other updates leave it alone
    assert store.get_sweep("s").error == reason
    store.update_sweep(sweep.id, status=SweepStatus.RUNNING, started=True)  # resumed
    assert store.get_sweep("s").error is None


def test_a_store_made_before_0003_gains_the_column_and_keeps_its_rows(tmp_path) -> None:
    url = f"sqlite:///{tmp_path / 'spx.db'}"
    engine = sa.create_engine(url)
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as conn:
        config.attributes["connection"] = conn
        command.upgrade(config, "0002")
        conn.execute(
            sa.text(
                "INSERT INTO sweeps (name, task, method, spec_text, spec_hash, status, created_at)"
                " VALUES ('old', 'digits-mlp', 'grid', 'x', '0', 'COMPLETED', '2026-01-01')"
            )
        )
    engine.dispose()
    with Store.open(url) as store:
        old = store.get_sweep("old")
        assert (old.status, old.error) == ("COMPLETED", None)
