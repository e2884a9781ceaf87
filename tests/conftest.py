"""Shared fixtures: a fresh SPX_HOME per test."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture
def spx_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "spx-home"
    monkeypatch.setenv("SPX_HOME", str(home))
    for var in ("SPX_STORE_URL", "MLFLOW_TRACKING_URI", "RAY_ADDRESS"):
        monkeypatch.delenv(var, raising=False)
    return home
