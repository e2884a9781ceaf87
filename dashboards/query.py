"""Plain SQL over the results store, read-only (``spx query``): streamed rows, or a DataFrame.

One statement, and only a read: SELECT, WITH ... SELECT, VALUES, TABLE, or EXPLAIN of one
of those. Nothing is created or migrated (a missing store is "no store at ..."); the
guards, down to the database's own, are in ``spx.platform.readonly``. The SQL reaches the
driver untouched: no bind-parameter or ``%`` processing. A statement timeout (30 s) and a
row limit (100 000) bound every query.

>>> import tempfile, pathlib
>>> from spx.platform.store import Store
>>> url = f"sqlite:///{pathlib.Path(tempfile.mkdtemp()) / 'spx.db'}"
>>> Store.open(url).close()
>>> run_query(url, "SELECT count(*) AS n FROM trial_summary").to_dict("records")
[{'n': 0}]
>>> run_query(url, "DELETE FROM trials")
Traceback (most recent call last):
...
spx.errors.ConfigError: query: the store is read-only here; write statements are refused...
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pandas as pd

from spx.platform.readonly import DEFAULT_LIMIT, DEFAULT_TIMEOUT_S, ReadRows, read_rows

__all__ = ["DEFAULT_LIMIT", "DEFAULT_TIMEOUT_S", "ReadRows", "query_rows", "run_query"]


@contextmanager
def query_rows(
    url: str, sql: str, *, timeout_s: float = DEFAULT_TIMEOUT_S, limit: int = DEFAULT_LIMIT
) -> Iterator[ReadRows]:
    """Run one read-only statement on the store at ``url``; its rows as they are fetched.

    ``rows.columns`` names them; after iterating, ``rows.truncated`` says whether ``limit``
    cut them. ``rows.notes`` holds lines for the user (a superuser role, say).
    Example: ``with query_rows(url, "TABLE trial_summary") as rows: n = sum(1 for _ in rows)``
    """
    with read_rows(url, sql, timeout_s=timeout_s, limit=limit) as rows:
        yield rows


def run_query(
    url: str, sql: str, *, timeout_s: float = DEFAULT_TIMEOUT_S, limit: int = DEFAULT_LIMIT
) -> pd.DataFrame:
    """Run one read-only statement on the store at ``url``; its rows as a DataFrame.

    A write statement, or SQL the database rejects, is a ConfigError naming the reason.
    ``df.attrs["truncated"]`` is True when ``limit`` cut the rows.
    Example: ``run_query(url, "SELECT sweep, min(val_loss) FROM trial_summary GROUP BY 1")``
    """
    with query_rows(url, sql, timeout_s=timeout_s, limit=limit) as rows:
        records = list(rows)
        df = pd.DataFrame.from_records(records, columns=rows.columns)
        df.attrs.update(truncated=rows.truncated, notes=list(rows.notes))
    return df
