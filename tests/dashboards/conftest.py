"""Store fixtures for the read side: the same ``store_url`` / ``store`` fixtures as the
platform tests (SQLite, and PostgreSQL at SPX_TEST_POSTGRES_URL), imported from
tests/platform/conftest.py rather than copied. That folder is named ``platform``, which
cannot be imported by name without shadowing the standard library, so it is loaded by path.
"""

from __future__ import annotations

import numpy as np
import pytest
from helpers import load_test_module

from spx.platform.store import Store, TrialStatus

_platform = load_test_module("platform/conftest.py", "spx_tests_platform_conftest")
postgres_base_url = _platform.postgres_base_url
postgres_url = _platform.postgres_url
store_url = _platform.store_url
store = _platform.store


def seed_sweep(store: Store, name: str = "demo") -> int:
    """A sweep of 4 trials: dense, two sparse, one failed with a NaN loss."""
    sweep = store.create_sweep(name, task="t", method="grid", spec_text="", spec_hash="0" * 64)
    rows = [
        (
            "none",
            0.0,
            TrialStatus.COMPLETED,
            {"val/loss": 0.5, "val/acc": 0.9, "model/params": 100},
        ),
        (
            "magnitude",
            0.5,
            TrialStatus.COMPLETED,
            {"val/loss": 0.6, "val/acc": 0.85, "model/params": 50, "model/params_avg": 70},
        ),
        (
            "magnitude",
            0.9,
            TrialStatus.COMPLETED,
            {"val/loss": 0.9, "val/acc": 0.8, "model/params": 10, "model/params_avg": 40},
        ),
        (
            "magnitude",
            0.99,
            TrialStatus.FAILED,
            {"val/loss": float("nan"), "val/acc": float("inf")},
        ),
    ]
    for number, (method, sparsity, status, metrics) in enumerate(rows):
        params = {"prune.method": method, "prune.sparsity": sparsity, "prune.schedule.start": 0.25}
        trial = store.add_trial(sweep.id, number, params)
        store.update_trial(trial.id, status=status, metrics=metrics)
        steps = np.arange(1, 4) * 10
        store.upsert_metrics(
            trial.id,
            [(int(s), "model/sparsity", sparsity * s / 30) for s in steps]
            + [(int(s), "val/loss", 1.0 / s) for s in steps],
        )
    return sweep.id


@pytest.fixture
def seeded(store: Store) -> Store:
    seed_sweep(store)
    return store


@pytest.fixture
def seed():
    """``seed(store, name)``: add the 4-trial demo sweep to a store."""
    return seed_sweep
