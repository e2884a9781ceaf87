"""Finding columns of a trials DataFrame by the names people type.

``val/loss`` means ``metrics.val/loss``, ``prune.method`` means ``params.prune.method``;
an exact column name always wins. A miss is a NotFoundError listing what exists.

>>> import pandas as pd
>>> df = pd.DataFrame({"status": ["COMPLETED", "FAILED"], "metrics.val/loss": [0.5, 9.0]})
>>> resolve_column(df, "val/loss")
'metrics.val/loss'
>>> completed(df)["metrics.val/loss"].tolist()
[0.5]
"""

from __future__ import annotations

import pandas as pd

from spx.errors import ConfigError, NotFoundError

__all__ = ["completed", "resolve_column"]

PREFIXES = ("", "metrics.", "params.")


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
