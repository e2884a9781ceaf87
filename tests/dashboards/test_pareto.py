"""Pareto fronts on literal frames."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from spx.dashboards.pareto import pareto_front, pareto_mask
from spx.errors import ConfigError, NotFoundError


def test_accuracy_against_parameters():
    df = pd.DataFrame(
        {
            "metrics.val/acc": [0.90, 0.80, 0.95, 0.70, 0.85, np.nan],
            "metrics.model/params": [100, 50, 400, 60, 100, 10],
        }
    )
    front = pareto_front(df, {"metrics.val/acc": "max", "metrics.model/params": "min"})
    assert front.index.tolist() == [2, 0, 1]  # best accuracy first; NaN row left out


def test_short_names_and_ties_are_kept():
    df = pd.DataFrame({"metrics.val/loss": [1.0, 1.0, 2.0], "metrics.model/flops": [5, 5, 1]})
    front = pareto_front(df, {"val/loss": "min", "model/flops": "min"})
    assert front.index.tolist() == [0, 1, 2]


def test_three_objectives_match_the_definition():
    rng = np.random.default_rng(0)
    costs = rng.integers(0, 4, (40, 3)).astype(float)
    expected = [not any(np.all(o <= r) and np.any(o < r) for o in costs) for r in costs]
    assert pareto_mask(costs).tolist() == expected


def test_bad_objectives():
    df = pd.DataFrame({"metrics.val/acc": [0.5]})
    with pytest.raises(ConfigError, match="min or max"):
        pareto_front(df, {"val/acc": "up"})  # type: ignore[dict-item]
    with pytest.raises(NotFoundError, match="available: metrics.val/acc"):
        pareto_front(df, {"val/nope": "max"})
