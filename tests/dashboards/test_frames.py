"""Sweep.trials_df / history_df on a real store (SQLite and PostgreSQL)."""

from __future__ import annotations

import math

import pytest

from spx.dashboards.frames import Sweep
from spx.errors import NotFoundError


def test_trials_df_has_one_row_per_trial_with_params_and_decoded_metrics(seeded, store_url):
    with Sweep.load("demo", store_url=store_url) as sw:
        df = sw.trials_df()
    assert df["number"].tolist() == [0, 1, 2, 3]
    assert df["status"].tolist() == ["COMPLETED"] * 3 + ["FAILED"]
    assert df["params.prune.method"].tolist() == ["none", "magnitude", "magnitude", "magnitude"]
    assert df["params.prune.sparsity"].tolist() == [0.0, 0.5, 0.9, 0.99]
    assert df["metrics.val/loss"].tolist()[:3] == [0.5, 0.6, 0.9]
    assert math.isnan(df["metrics.val/loss"][3])  # stored as the string "nan"
    assert df["metrics.val/acc"][3] == math.inf
    assert df["metrics.model/params"].dtype == "float64"
    assert df["n_avg"].tolist()[1:3] == [70.0, 40.0]
    assert set(df["sweep"]) == {"demo"}


def test_history_df_is_long_and_filtered_by_name_and_trial(seeded, store_url):
    with Sweep.load("demo", store_url=store_url) as sw:
        hist = sw.history_df(["model/sparsity"], trials=[2])
        everything = sw.history_df()
    assert list(hist.columns) == ["trial", "step", "name", "value"]
    assert hist["step"].tolist() == [10, 20, 30]
    assert hist["value"].tolist() == pytest.approx([0.3, 0.6, 0.9])
    assert set(hist["name"]) == {"model/sparsity"} and set(hist["trial"]) == {2}
    assert len(everything) == 4 * 2 * 3


def test_sweeps_are_kept_apart(store, store_url, seed):
    seed(store, "one")
    seed(store, "two")
    with Sweep.load("two", store_url=store_url) as sw:
        assert len(sw.trials_df()) == 4
        assert len(sw.history_df(["val/loss"])) == 12


def test_load_finds_the_store_like_the_cli(seeded, store_url, monkeypatch):
    monkeypatch.setenv("SPX_STORE_URL", store_url)
    with Sweep.load("demo") as sw:
        assert sw.name == "demo"


def test_an_unknown_sweep_lists_the_known_ones(seeded, store_url):
    with pytest.raises(NotFoundError, match="no sweep named 'nope'.*demo"):
        Sweep.load("nope", store_url=store_url)


def test_an_empty_sweep_gives_empty_frames(store, store_url):
    store.create_sweep("empty", task="t", method="grid", spec_text="", spec_hash="0" * 64)
    with Sweep.load("empty", store_url=store_url) as sw:
        assert len(sw.trials_df()) == 0
        assert len(sw.history_df()) == 0
