"""A sweep of the results store as pandas DataFrames, one SQL query per frame.

``Sweep.load(name)`` finds the store the way the CLI does (``--store`` aside:
``SPX_STORE_URL``, else ``$SPX_HOME/spx.db``). ``trials_df()`` has one row per trial
(``params.*`` and final ``metrics.*`` columns); ``history_df()`` is the metric history in
long form. Both are built from a single query each, with no per-row Python, so they stay
fast on stores of 100 000 trials.

>>> import tempfile, pathlib
>>> from spx.platform.store import Store, TrialStatus
>>> url = f"sqlite:///{pathlib.Path(tempfile.mkdtemp()) / 'spx.db'}"
>>> with Store.open(url) as store:
...     s = store.create_sweep("demo", task="t", method="grid", spec_text="", spec_hash="0")
...     t = store.add_trial(s.id, 0, {"prune.method": "none"})
...     store.update_trial(t.id, status=TrialStatus.COMPLETED,
...                        metrics={"val/loss": 0.5, "train/loss": float("nan")})
...     store.upsert_metrics(t.id, [(10, "val/loss", 0.7), (20, "val/loss", 0.5)])
2
>>> with Sweep.load("demo", store_url=url) as sw:
...     df = sw.trials_df()
...     hist = sw.history_df(["val/loss"])
>>> df[["number", "status", "params.prune.method", "metrics.val/loss"]].to_dict("records")
[{'number': 0, 'status': 'COMPLETED', 'params.prune.method': 'none', 'metrics.val/loss': 0.5}]
>>> float(df["metrics.train/loss"].iloc[0])
nan
>>> hist.to_dict("list")
{'trial': [0, 0], 'step': [10, 20], 'name': ['val/loss', 'val/loss'], 'value': [0.7, 0.5]}
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import pandas as pd
from sqlalchemy import Double, Select, Text, cast, select, type_coerce

from spx.platform.settings import resolve
from spx.platform.store import Store, SweepRow
from spx.platform.store_models import Metric, Trial

__all__ = ["SUMMARY_COLUMNS", "Sweep", "expand_json"]

# Short names for the metrics every analysis uses (as in the trial_summary view).
SUMMARY_COLUMNS = {
    "n_params": "metrics.model/params",
    "n_avg": "metrics.model/params_avg",
    "tokens": "metrics.data/tokens",
    "flops": "metrics.model/flops",
}


class Sweep:
    """One sweep of a results store, read as DataFrames. Build it with ``Sweep.load``."""

    def __init__(self, store: Store, row: SweepRow, *, owns_store: bool = False):
        self.store = store
        self.row = row
        self._owns_store = owns_store

    @classmethod
    def load(cls, name: str, store_url: str | None = None) -> Sweep:
        """Open the store (``store_url``, else as the CLI resolves it) and find sweep ``name``.

        An unknown name is a NotFoundError that lists recent sweeps.
        Example: ``spx.Sweep.load("quickstart").trials_df()``
        """
        store = Store.open(store_url or resolve().store_url)
        try:
            row = store.get_sweep(name)
        except Exception:
            store.close()
            raise
        return cls(store, row, owns_store=True)

    @property
    def name(self) -> str:
        return self.row.name

    def close(self) -> None:
        """Close the store if this object opened it."""
        if self._owns_store:
            self.store.close()

    def __enter__(self) -> Sweep:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Sweep({self.name!r}, {self.store!r})"

    def trials_df(self) -> pd.DataFrame:
        """One row per trial, in number order.

        Columns: ``sweep``, ``trial_id``, ``number``, ``status``, ``attempt``, ``step``,
        ``error``, ``started_at``, ``finished_at``, ``duration_s``, one ``params.<key>`` per
        config key, one float ``metrics.<name>`` per final metric (NaN where a trial has
        none, or diverged), and the short names of ``SUMMARY_COLUMNS`` (``n_avg`` ...).
        Example: ``sw.trials_df().groupby("params.prune.method")["metrics.val/loss"].min()``
        """
        raw = self._read(_trials_query(self.row.id))
        params = expand_json(raw.pop("params"), "params.")
        metrics = expand_json(raw.pop("metrics"), "metrics.")
        metrics = metrics.apply(pd.to_numeric, errors="coerce").astype("float64")
        for column in ("started_at", "finished_at"):
            raw[column] = pd.to_datetime(raw[column], utc=True)
        raw["duration_s"] = (raw["finished_at"] - raw["started_at"]).dt.total_seconds()
        short = {
            key: metrics[col] if col in metrics else float("nan")
            for key, col in SUMMARY_COLUMNS.items()
        }
        df = pd.concat([raw, params, metrics], axis=1).assign(**short)
        df.insert(0, "sweep", self.name)
        return df

    def history_df(
        self, names: Sequence[str] | None = None, trials: Sequence[int] | None = None
    ) -> pd.DataFrame:
        """The metric history in long form: columns ``trial`` (number), ``step``, ``name``,
        ``value``, sorted by trial, name, step; only ``names`` / trial ``numbers`` if given.

        Example: ``sw.history_df(["model/sparsity"]).pivot(index="step", columns="trial")``
        """
        query: Select = (
            select(
                Trial.number.label("trial"),
                Metric.step,
                Metric.name,
                # The raw double: MetricValue's per-row NULL -> NaN is pandas' default anyway.
                type_coerce(Metric.value, Double()).label("value"),
            )
            .join(Trial, Trial.id == Metric.trial_id)
            .where(Trial.sweep_id == self.row.id)
            .order_by(Trial.number, Metric.name, Metric.step)
        )
        if names is not None:
            query = query.where(Metric.name.in_(list(names)))
        if trials is not None:
            query = query.where(Trial.number.in_([int(n) for n in trials]))
        df = self._read(query)
        df["value"] = df["value"].astype("float64")
        return df

    def _read(self, query: Select) -> pd.DataFrame:
        with self.store.engine.connect() as conn:
            return pd.read_sql(query, conn)


def _trials_query(sweep_id: int) -> Select:
    # JSON as text on both backends, so it is parsed once, in bulk, by expand_json.
    return (
        select(
            Trial.id.label("trial_id"),
            Trial.number,
            Trial.status,
            Trial.attempt,
            Trial.step,
            Trial.error,
            Trial.started_at,
            Trial.finished_at,
            cast(Trial.params, Text).label("params"),
            cast(Trial.metrics, Text).label("metrics"),
        )
        .where(Trial.sweep_id == sweep_id)
        .order_by(Trial.number)
    )


def expand_json(texts: pd.Series, prefix: str) -> pd.DataFrame:
    """JSON objects (one text per row, None for none) as columns named ``prefix + key``.

    >>> expand_json(pd.Series(['{"a": 1}', None, '{"b": "x"}']), "p.").to_dict("list")
    {'p.a': [1.0, nan, nan], 'p.b': [nan, nan, 'x']}
    """
    lines = texts.to_numpy(dtype=object, na_value="{}")
    try:  # Arrow's JSON reader parses and builds columns in C++, several times faster
        frame = _arrow_frame(lines, texts.index)
    except Exception:  # a key with mixed types (e.g. "nan" text among numbers): the slow path
        # One json.loads over the joined texts: the parse runs in C, not once per row.
        objects = json.loads("[" + ",".join(lines) + "]")
        frame = pd.DataFrame.from_records(objects, index=texts.index)
    if frame.empty:
        frame = pd.DataFrame(index=texts.index)
    frame = frame.reindex(columns=sorted(frame.columns))
    return frame.add_prefix(prefix)


def _arrow_frame(lines: Any, index: pd.Index) -> pd.DataFrame:
    import pyarrow as pa
    import pyarrow.json as pa_json

    data = "\n".join(lines).encode()
    # One block for the whole input: types are inferred over every row at once.
    options = pa_json.ReadOptions(block_size=len(data) + 1)
    table = pa_json.read_json(pa.py_buffer(data), read_options=options)
    frame = table.to_pandas()
    for name, field in zip(table.column_names, table.schema, strict=True):
        if pa.types.is_list(field.type):  # as the json path gives them: Python lists
            frame[name] = [None if v is None else v.tolist() for v in frame[name]]
        elif pa.types.is_null(field.type):
            frame[name] = float("nan")
        elif pa.types.is_integer(field.type) and frame[name].isna().any():
            frame[name] = frame[name].astype("float64")
    frame.index = index
    return frame
