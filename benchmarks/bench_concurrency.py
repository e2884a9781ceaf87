"""Upserts per second through ``Store`` with many writer processes, SQLite and PostgreSQL.

Run by hand, not a test::

    .venv/bin/python benchmarks/bench_concurrency.py --writers 1,4,16 --ops 1000 \
        --postgres postgresql+psycopg://postgres@127.0.0.1:5432/test

Each writer is a spawned process with its own ``Store``; it waits at a barrier (so start-up
is not timed), then makes ``--ops`` calls of ``upsert_metrics`` (one transaction each: its
own row for the step, the previous step rewritten with the same value, and one key every
writer fights over) and an ``update_trial`` every tenth call. The wall time runs from the
first writer leaving the barrier to the last one finishing. Afterwards it checks that no
row was lost and no call failed. PostgreSQL runs in a fresh schema, dropped at the end.
Prints a markdown table.
"""

from __future__ import annotations

import argparse
import multiprocessing
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from spx.errors import SpxError
from spx.platform.store import Store, TrialStatus


def writer(url: str, trial: int, shared: int, worker: int, n: int, barrier: Any, out: Any) -> None:
    errors = 0
    with Store.open(url) as store:
        barrier.wait()
        start = time.time()
        for step in range(n):
            rows = [(step, "loss", float(step)), (step, "any", float(worker))]
            if step:
                rows.append((step - 1, "loss", float(step - 1)))
            try:
                store.upsert_metrics(trial, rows)
                store.upsert_metrics(shared, [(step, "any", float(worker))])
                if step % 10 == 9:
                    store.update_trial(trial, status=TrialStatus.RUNNING, step=step, heartbeat=True)
            except SpxError:
                errors += 1
        out.put((start, time.time(), errors))


def run(url: str, writers: int, n: int) -> dict[str, float]:
    with Store.open(url) as store:
        sweep = store.create_sweep(
            f"bench-{uuid.uuid4().hex[:8]}", task="t", method="grid", spec_text="", spec_hash=""
        )
        trials = [store.add_trial(sweep.id, w, {}).id for w in range(writers)]
        shared = store.add_trial(sweep.id, writers, {}).id
        ctx = multiprocessing.get_context("spawn")
        barrier, out = ctx.Barrier(writers), ctx.Queue()
        procs = [
            ctx.Process(target=writer, args=(url, trials[w], shared, w, n, barrier, out))
            for w in range(writers)
        ]
        for p in procs:
            p.start()
        results = [out.get() for _ in procs]
        for p in procs:
            p.join()
        lost = sum(2 * n - store.count_metrics(t) for t in trials) + n - store.count_metrics(shared)
    seconds = max(r[1] for r in results) - min(r[0] for r in results)
    calls = 2 * writers * n
    return {
        "seconds": seconds,
        "upserts_per_s": calls / seconds,
        "rows_per_s": writers * n * 4 / seconds,
        "errors": sum(r[2] for r in results),
        "lost": lost,
    }


def postgres_schema(base: str) -> tuple[str, str]:
    schema = f"spx_bench_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    admin.dispose()
    url = sa.make_url(base).update_query_dict({"options": f"-csearch_path={schema}"})
    return url.render_as_string(hide_password=False), schema


def drop_schema(base: str, schema: str) -> None:
    admin = sa.create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
    admin.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--writers", default="1,4,16", help="comma-separated writer counts")
    parser.add_argument("--ops", type=int, default=1000, help="upsert_metrics pairs per writer")
    parser.add_argument("--postgres", default=None, help="PostgreSQL admin URL (skip if unset)")
    args = parser.parse_args()
    counts = [int(c) for c in args.writers.split(",")]

    print("| backend | writers | ops/writer | seconds | upserts/s | rows/s | errors | lost |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    backends = ["sqlite"] + (["postgresql"] if args.postgres else [])
    for backend in backends:
        for writers in counts:
            with tempfile.TemporaryDirectory() as tmp:
                if backend == "sqlite":
                    url, schema = f"sqlite:///{Path(tmp) / 'spx.db'}", None
                else:
                    url, schema = postgres_schema(args.postgres)
                try:
                    r = run(url, writers, args.ops)
                finally:
                    if schema is not None:
                        drop_schema(args.postgres, schema)
            print(
                f"| {backend} | {writers} | {args.ops} | {r['seconds']:.1f} | "
                f"{r['upserts_per_s']:,.0f} | {r['rows_per_s']:,.0f} | "
                f"{r['errors']} | {r['lost']} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
