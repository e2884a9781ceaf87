"""Pareto fronts of trials: the rows no other row beats on every objective at once.

>>> import pandas as pd
>>> df = pd.DataFrame({"acc": [0.9, 0.8, 0.95, 0.7], "params": [100, 50, 400, 60]})
>>> pareto_front(df, {"acc": "max", "params": "min"})
    acc  params
2  0.95     400
0  0.90     100
1  0.80      50
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

import numpy as np
import pandas as pd

from spx.dashboards.columns import resolve_column
from spx.errors import ConfigError

__all__ = ["Goal", "pareto_front", "pareto_mask"]

Goal = Literal["min", "max"]


def pareto_front(df: pd.DataFrame, objectives: Mapping[str, Goal]) -> pd.DataFrame:
    """The non-dominated rows of ``df`` for ``objectives`` ({column: "min" | "max"}),
    sorted along the first objective (best first). Rows missing any objective (NaN) are
    left out. Columns may be named short (``val/acc`` for ``metrics.val/acc``).

    A row dominates another when it is at least as good on every objective and better on
    one; equal rows are all kept. Example:
    ``pareto_front(sw.trials_df(), {"val/acc": "max", "model/params": "min"})``
    """
    if not objectives:
        raise ConfigError("give at least one objective", field="objectives", value={})
    columns, signs = [], []
    for name, goal in objectives.items():
        if goal not in ("min", "max"):
            raise ConfigError("an objective's goal must be min or max", field=name, value=goal)
        columns.append(resolve_column(df, name, what="objective column"))
        signs.append(1.0 if goal == "min" else -1.0)
    values = df[columns].apply(pd.to_numeric, errors="coerce").to_numpy(float) * signs
    keep = np.isfinite(values).all(axis=1)
    mask = np.zeros(len(df), dtype=bool)
    mask[np.flatnonzero(keep)] = pareto_mask(values[keep])
    front = df[mask]
    order = np.argsort(values[mask][:, 0], kind="stable")
    return front.iloc[order]


def pareto_mask(costs: np.ndarray) -> np.ndarray:
    """True for the rows of ``costs`` (points x objectives, all minimised) on the front.

    >>> pareto_mask(np.array([[1, 2], [2, 1], [2, 2], [1, 2]])).tolist()
    [True, True, False, True]
    """
    if len(costs) == 0:
        return np.zeros(0, dtype=bool)
    # Equal rows share one verdict: decide on the distinct rows, in lexicographic order,
    # where no row can be dominated by a row after it.
    distinct, inverse = np.unique(costs, axis=0, return_inverse=True)
    if distinct.shape[1] == 2:
        # Two objectives: on the front iff strictly below every earlier row's second cost.
        before = np.minimum.accumulate(np.concatenate([[np.inf], distinct[:-1, 1]]))
        on_front = distinct[:, 1] < before
    else:
        on_front = _sweep(distinct)
    return on_front[inverse.reshape(-1)]


def _sweep(ranked: np.ndarray) -> np.ndarray:
    on_front = np.zeros(len(ranked), dtype=bool)
    front: list[np.ndarray] = []
    for i, row in enumerate(ranked):
        if front:
            kept = np.array(front)
            if (np.all(kept <= row, axis=1) & np.any(kept < row, axis=1)).any():
                continue
        front.append(row)
        on_front[i] = True
    return on_front
