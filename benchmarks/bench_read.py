"""The read side at scale: trials_df, history_df and a scaling-law fit over a store of
100 000 trials and 10 million metric rows, on SQLite and on PostgreSQL.

    .venv/bin/python benchmarks/bench_read.py                       # SQLite in a temp dir
    .venv/bin/python benchmarks/bench_read.py --url postgresql+psycopg://postgres@127.0.0.1:5432/test

The store is filled with the project's own schema (Alembic migrations through
``Store.open``) by bulk inserts (COPY on PostgreSQL), then each read is timed three times
and the median printed. Trials follow a Journey-Matters law with noise, so the fit is a
real one. Goal (issue #5): trials_df and the fit each under 2 s.
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import sqlalchemy as sa

from spx.dashboards.frames import Sweep
from spx.dashboards.scaling import fit_scaling_law
from spx.platform.store import Store

INSERT_METRIC = sa.text(
    "INSERT INTO metrics (trial_id, step, name, value) VALUES (:trial_id, :step, :name, :value)"
)


def fill(url: str, trials: int, per_trial: int, name: str) -> float:
    """Create sweep ``name`` with ``trials`` trials of ``per_trial`` metric rows each."""
    started = time.perf_counter()
    with Store.open(url) as store:
        sweep = store.create_sweep(
            name, task="code-gpt", method="grid", spec_text="", spec_hash="0"
        )
    engine = sa.create_engine(url)
    ids = _insert_trials(engine, _trial_rows(sweep.id, trials))
    _insert_metrics(engine, ids, per_trial)
    engine.dispose()
    return time.perf_counter() - started


def _trial_rows(sweep_id: int, trials: int) -> list[dict]:
    """Completed trials of a width x sparsity x steps grid whose loss follows a
    Journey-Matters-like law in the average parameter count, with 1 % noise."""
    rng = np.random.default_rng(0)
    widths = rng.choice([64, 128, 256, 512], trials)
    sparsity = rng.choice([0.0, 0.5, 0.75], trials)
    steps = rng.choice([1000, 2000, 4000], trials)
    n = widths.astype(float) ** 2 * 12
    n_avg = n * (1 - sparsity / 2)
    tokens = steps.astype(float) * 64 * 32
    loss = (1.5 + 50 / n_avg**0.3 + 400 / tokens**0.3) * np.exp(0.01 * rng.standard_normal(trials))
    rows = []
    for i in range(trials):
        params = {
            "model.width": int(widths[i]),
            "prune.method": "magnitude" if sparsity[i] else "none",
            "prune.sparsity": float(sparsity[i]),
            "train.steps": int(steps[i]),
            "train.seed": int(i % 3),
        }
        metrics = {
            "val/loss": float(loss[i]),
            "val/acc": float(1 / loss[i]),
            "model/params": float(n[i] * (1 - sparsity[i])),
            "model/params_avg": float(n_avg[i]),
            "data/tokens": float(tokens[i]),
            "model/flops": float(n[i] * (1 - sparsity[i]) * 64),
        }
        rows.append(
            {
                "sweep_id": sweep_id,
                "number": i,
                "params": params,
                "status": "COMPLETED",
                "attempt": 0,
                "metrics": metrics,
                "model_width": int(widths[i]),
                "prune_method": params["prune.method"],
                "prune_sparsity": params["prune.sparsity"],
                "train_steps": int(steps[i]),
                "train_seed": int(i % 3),
            }
        )
    return rows


def _insert_trials(engine: sa.Engine, rows: list[dict]) -> list[int]:
    """Bulk-insert the trial rows; their ids in ``number`` order."""
    from spx.platform.store_models import Trial

    sweep_id = rows[0]["sweep_id"]
    with engine.begin() as conn:
        for start in range(0, len(rows), 10_000):
            conn.execute(sa.insert(Trial), rows[start : start + 10_000])
        query = sa.text(f"SELECT id FROM trials WHERE sweep_id = {sweep_id} ORDER BY number")
        return [r[0] for r in conn.execute(query)]


def _insert_metrics(engine: sa.Engine, ids: list[int], per_trial: int) -> None:
    """``per_trial`` curve rows per trial, four names: COPY on PostgreSQL, else batches."""
    names = ["train/loss", "val/loss", "model/sparsity", "model/params"]
    step_values = np.arange(1, per_trial // len(names) + 1) * 10
    if engine.dialect.name == "postgresql":
        raw = engine.raw_connection()
        try:
            cur = raw.cursor()
            for start in range(0, len(ids), 2_000):
                buf = io.StringIO()
                for tid in ids[start : start + 2_000]:
                    for name in names:
                        for s in step_values:
                            buf.write(f"{tid}\t{s}\t{name}\t{1.0 / s}\n")
                with cur.copy("COPY metrics (trial_id, step, name, value) FROM STDIN") as copy:
                    copy.write(buf.getvalue())
            raw.commit()
        finally:
            raw.close()
        return
    with engine.begin() as conn:
        batch = []
        for tid in ids:
            for name in names:
                batch.extend(
                    {"trial_id": tid, "step": int(s), "name": name, "value": 1.0 / s}
                    for s in step_values
                )
            if len(batch) >= 200_000:
                conn.execute(INSERT_METRIC, batch)
                batch = []
        if batch:
            conn.execute(INSERT_METRIC, batch)


def median_s(fn, repeats: int = 3) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeats):
        t = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", help="store URL (default: a SQLite file in a temp dir)")
    parser.add_argument("--trials", type=int, default=100_000)
    parser.add_argument("--metrics-per-trial", type=int, default=100)
    args = parser.parse_args()
    tmp = tempfile.TemporaryDirectory()
    url = args.url or f"sqlite:///{Path(tmp.name) / 'spx.db'}"
    name = f"bench-read-{int(time.time())}"
    fill_s = fill(url, args.trials, args.metrics_per_trial, name)
    with Sweep.load(name, url) as sw:
        df_s, df = median_s(sw.trials_df)
        hist_s, hist = median_s(lambda: sw.history_df(["val/loss"], trials=list(range(100))))
    fit0_s, fit = median_s(lambda: fit_scaling_law(df, law="journey", bootstrap=0))
    fit20_s, _ = median_s(lambda: fit_scaling_law(df, law="journey", bootstrap=20), repeats=1)
    out = {
        "backend": sa.make_url(url).get_backend_name(),
        "trials": len(df),
        "metric_rows": args.trials * (args.metrics_per_trial // 4) * 4,
        "fill_s": round(fill_s, 1),
        "trials_df_s": round(df_s, 3),
        "history_df_100_trials_s": round(hist_s, 3),
        "history_rows": len(hist),
        "fit_journey_s": round(fit0_s, 3),
        "fit_journey_bootstrap20_s": round(fit20_s, 3),
        "fit_alpha": round(fit.coefficients.get("alpha", float("nan")), 4),
    }
    print(json.dumps(out))
    if args.url:  # leave a shared server as it was
        with Store.open(url) as store:
            engine = sa.create_engine(url)
            with engine.begin() as conn:
                conn.execute(sa.text("DELETE FROM sweeps WHERE name = :n"), {"n": name})
            engine.dispose()
            del store


if __name__ == "__main__":
    main()
