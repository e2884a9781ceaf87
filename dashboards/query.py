"""Plain SQL over the results store, read-only, as a DataFrame (``spx query``).

The store is first opened normally (which migrates it, so the analysis views exist),
then the statement runs on a read-only connection (see ``spx.platform.readonly``). The
SQL goes to the driver untouched: no bind-parameter or ``%`` processing.

>>> import tempfile, pathlib
>>> url = f"sqlite:///{pathlib.Path(tempfile.mkdtemp()) / 'spx.db'}"
>>> run_query(url, "SELECT count(*) AS n FROM trial_summary").to_dict("records")
[{'n': 0}]
>>> run_query(url, "DELETE FROM trials")
Traceback (most recent call last):
...
spx.errors.ConfigError: query: the store is read-only here; write statements are refused ...
"""

from __future__ import annotations

import pandas as pd
from sqlalchemy.exc import DBAPIError

from spx.errors import ConfigError
from spx.platform.readonly import readonly_connection
from spx.platform.store import Store

__all__ = ["run_query"]

_READ_ONLY_SQLSTATE = "25006"  # PostgreSQL: read_only_sql_transaction


def run_query(url: str, sql: str) -> pd.DataFrame:
    """Run one SQL statement read-only on the store at ``url``; its rows as a DataFrame.

    A write statement, or SQL the database rejects, is a ConfigError naming the reason.
    Example: ``run_query(url, "SELECT sweep, min(val_loss) FROM trial_summary GROUP BY 1")``
    """
    if not sql.strip():
        raise ConfigError("the query is empty", field="query", value=sql)
    Store.open(url).close()
    with readonly_connection(url) as conn:
        cursor = conn.connection.cursor()
        try:
            cursor.execute(sql)
            columns = [d[0] for d in cursor.description or ()]
            rows = cursor.fetchall() if cursor.description else []
        except Exception as exc:
            raise _refusal(exc, conn.dialect.dbapi) from None
        finally:
            cursor.close()
    return pd.DataFrame.from_records(rows, columns=columns)


def _refusal(exc: Exception, dbapi) -> Exception:
    if dbapi is None or not isinstance(exc, dbapi.Error | DBAPIError):
        return exc
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    readonly = "readonly database" in text or getattr(exc, "sqlstate", None) == _READ_ONLY_SQLSTATE
    if readonly:
        return ConfigError(
            f"the store is read-only here; write statements are refused ({text})", field="query"
        )
    return ConfigError(f"the database rejected the query: {text}", field="query")
