"""Finding columns of a trials DataFrame by the names people type, and grouping its trials
by config.

``val/loss`` means ``metrics.val/loss``, ``prune.method`` means ``params.prune.method``;
an exact column name always wins. A miss is a NotFoundError listing what exists.
``config_groups`` puts the trials that differ only in ``train.seed`` together and names
each group by its varied keys (``prune.method=magnitude, prune.sparsity=0.9``).

>>> import pandas as pd
>>> df = pd.DataFrame({"status": ["COMPLETED", "FAILED"], "metrics.val/loss": [0.5, 9.0]})
>>> resolve_column(df, "val/loss")
'metrics.val/loss'
>>> completed(df)["metrics.val/loss"].tolist()
[0.5]
>>> df["params.prune.sparsity"] = [0.9, 0.9]
>>> df["params.train.seed"] = [0, 1]
>>> [(label, len(rows)) for label, rows in config_groups(df)]
[('all trials', 2)]
"""

from __future__ import annotations

import pandas as pd

from spx.errors import ConfigError, NotFoundError

__all__ = ["SEED", "completed", "config_groups", "config_label", "resolve_column", "varied"]

PREFIXES = ("", "metrics.", "params.")
SEED = "params.train.seed"


def resolve_column(df: pd.DataFrame, name: str, *, what: str = "column") -> str:
    """The column of ``df`` that ``name`` means (exact, else ``metrics.``/``params.`` + name)."""
    for prefix in PREFIXES:
        if prefix + name in df.columns:
            return prefix + name
    available = ", ".join(str(c) for c in df.columns) or "none: the frame is empty"
    raise NotFoundError(f"no {what} {name!r} in the trials (available: {available})")


def completed(df: pd.DataFrame) -> pd.DataFrame:
    """The COMPLETED trials of ``df`` (all rows when it has no ``status`` column).

    A frame with trials but none completed is a ConfigError: there is nothing to analyse.
    """
    if "status" not in df.columns:
        return df
    done = df[df["status"] == "COMPLETED"]
    if done.empty:
        counts = df["status"].value_counts().to_dict() if len(df) else {}
        raise ConfigError(
            "the sweep has no completed trials to analyse", field="status", value=counts
        )
    return done


def varied(df: pd.DataFrame) -> list[str]:
    """The ``params.*`` columns of ``df`` that take more than one value, in column order."""
    return [c for c in df.columns if c.startswith("params.") and df[c].astype(str).nunique() > 1]


def config_label(row: pd.Series, keys: list[str]) -> str:
    """``key=value`` for each of ``keys`` the row has a value for (params. prefix dropped).

    >>> config_label(pd.Series({"params.model.width": 64.0, "params.train.lr": 3e-4}),
    ...              ["params.model.width", "params.train.lr"])
    'model.width=64, train.lr=0.0003'
    """
    parts = [f"{k.removeprefix('params.')}={_value(row[k])}" for k in keys if _known(row[k])]
    return ", ".join(parts) or "all trials"


def config_groups(
    df: pd.DataFrame, exclude: tuple[str, ...] = (), keys: list[str] | None = None
) -> list[tuple[str, pd.DataFrame]]:
    """The trials of ``df`` grouped by config: equal in every varied key (``keys``, default
    ``varied(df)``) but ``train.seed`` and ``exclude``, so replicate seeds of one config
    form one group. Each group comes with its label (``config_label``), in first-trial order.
    """
    keys = [k for k in (varied(df) if keys is None else keys) if k != SEED and k not in exclude]
    if df.empty:
        return []
    if not keys:
        return [(config_label(df.iloc[0], []), df)]
    codes = df[keys].astype(str)
    grouped = df.groupby([codes[k] for k in keys], sort=False)
    return [(config_label(rows.iloc[0], keys), rows) for _, rows in grouped]


def _known(value: object) -> bool:
    return not (isinstance(value, float) and value != value) and value is not None


def _value(value: object) -> str:
    if isinstance(value, bool) or not isinstance(value, float):
        return str(value)
    return str(int(value)) if value.is_integer() and abs(value) < 1e15 else f"{value:.6g}"
