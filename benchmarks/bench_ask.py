"""Sampler ``ask`` latency at 100 / 1 000 / 5 000 finished trials (issue 6).

Run by hand, not a test::

    .venv/bin/python benchmarks/bench_ask.py
    .venv/bin/python benchmarks/bench_ask.py --sizes 100,1000 \\
        --postgres postgresql+psycopg://postgres@127.0.0.1:5432/test

An 8-parameter space (6 float/int ranges, 2 categoricals), strategies built the driver's
way: ``build_strategy`` over a ``StrategyContext`` whose ``storage_url`` is
``study_storage_url`` of a store, a temporary SQLite file or (``--postgres``) a fresh schema
``bench_ask_<hex>`` whose study lands in ``bench_ask_<hex>_optuna`` (both dropped at the
end). Per backend one study grows through the sizes:

1. fill up to N finished trials: random draws scored by a cheap synthetic objective, each
   with the ``spx.number`` attribute an spx study carries, written in one transaction
   through Optuna's own ORM models (see ``fill_rdb``), so 5 000 trials take seconds, not
   5 000 TPE asks;
2. per method, rebuild the strategy on the study (what ``spx sweep resume`` does), step
   past the trials it replays, and time 50 ``ask()`` calls, each followed by a ``tell()``;
   those trials stay, so the second method is timed at N + 50 and the next size fills up
   from there.

Methods: ``tpe`` (spx's TPE: multivariate, constant liar), ``optuna-random`` (Optuna's
RandomSampler inside spx's OptunaSearch: what an ask/tell costs the storage alone, no
sampler work) and ``random`` (spx's RandomSearch, which keeps no study: timed once, filled
by ask/tell). The Optuna methods also run on an in-memory study (``storage_url`` None),
which is the sampler's own cost. Prints a markdown table of p50/p95 in ms.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import statistics
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import optuna
import sqlalchemy as sa
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
    distribution_to_json,
)
from optuna.samplers import RandomSampler
from optuna.storages import RDBStorage
from optuna.storages._rdb import models
from optuna.trial import TrialState
from sqlalchemy import orm

from spx.search.base import Outcome, Strategy
from spx.search.optuna_search import NUMBER, NUMBERED, OptunaSearch
from spx.search.space import Axis, Categorical, FloatRange, IntRange, Space
from spx.search.strategies import StrategyContext, build_strategy
from spx.search.study_storage import open_storage, study_storage_url

SPACE: Space = {
    "train.lr": FloatRange(1e-4, 1e-1, log=True),
    "train.weight_decay": FloatRange(0.0, 0.1),
    "prune.sparsity": FloatRange(0.5, 0.95),
    "prune.schedule.start": FloatRange(0.0, 0.3),
    "model.width": IntRange(16, 512, log=True),
    "train.batch_size": IntRange(16, 256),
    "prune.method": Categorical(("magnitude", "global-magnitude", "random", "rigl")),
    "train.optimizer": Categorical(("adamw", "sgd")),
}
TIMED = 50
BUDGET = 1_000_000


def objective(params: dict[str, Any]) -> float:
    """Cheap and smooth, with a best corner, so TPE has something to model."""
    lr = math.log10(params["train.lr"]) + 2.5
    penalty = {"magnitude": 0.0, "global-magnitude": 0.05, "random": 0.3, "rigl": 0.1}
    return (
        lr**2
        + (params["prune.sparsity"] - 0.8) ** 2
        + params["train.weight_decay"]
        + abs(math.log2(params["model.width"]) - 7) / 10
        + penalty[params["prune.method"]]
        + (0.1 if params["train.optimizer"] == "sgd" else 0.0)
    )


def distribution(axis: Axis) -> BaseDistribution:
    """The distribution OptunaSearch's suggest_* calls record for ``axis``."""
    if isinstance(axis, Categorical):
        return CategoricalDistribution(axis.values)
    if isinstance(axis, FloatRange):
        return FloatDistribution(axis.low, axis.high, log=axis.log)
    return IntDistribution(axis.low, axis.high, log=axis.log)


def draws(start: int, stop: int, seed: int) -> Iterator[tuple[int, dict[str, Any], float]]:
    """Random configs for spx numbers ``start`` .. ``stop - 1`` and their objective values."""
    rng = random.Random(seed + start)
    for number in range(start, stop):
        params = {k: a.sample(rng) for k, a in SPACE.items()}
        yield number, params, objective(params)


def fill_rdb(url: str, study_name: str, start: int, stop: int) -> None:
    """Add finished trials ``start`` .. ``stop - 1`` in one transaction.

    Optuna's ``add_trials`` commits (and locks the study) once per trial, 30-70 ms each on
    this box, so 5 000 trials per backend would take minutes: the rows go in through
    Optuna's own ORM models instead (optuna.storages._rdb.models), exactly as ``add_trial``
    writes them, with Optuna number = spx number.
    """
    storage = open_storage(url)  # creates the study's PostgreSQL schema when missing
    assert isinstance(storage, RDBStorage)
    study = optuna.create_study(study_name=study_name, storage=storage, load_if_exists=True)
    study.set_user_attr(NUMBERED, True)
    dists = {k: distribution(a) for k, a in SPACE.items()}
    dist_json = {k: distribution_to_json(d) for k, d in dists.items()}
    now = datetime.now(UTC)
    finite = models.TrialValueModel.TrialValueType.FINITE
    with orm.Session(storage.engine) as session, session.begin():
        for number, params, value in draws(start, stop, seed=0):
            trial = models.TrialModel(
                number=number, study_id=study._study_id, state=TrialState.COMPLETE
            )
            trial.datetime_start = trial.datetime_complete = now
            trial.params = [
                models.TrialParamModel(
                    param_name=k,
                    param_value=dists[k].to_internal_repr(v),
                    distribution_json=dist_json[k],
                )
                for k, v in params.items()
            ]
            trial.values = [models.TrialValueModel(objective=0, value=value, value_type=finite)]
            trial.user_attributes = [
                models.TrialUserAttributeModel(key=NUMBER, value_json=json.dumps(number))
            ]
            session.add(trial)
    storage.engine.dispose()


def fill_memory(study: optuna.Study, start: int, stop: int) -> None:
    dists = {k: distribution(a) for k, a in SPACE.items()}
    study.add_trials(
        optuna.trial.create_trial(params=params, distributions=dists, value=value)
        for _, params, value in draws(start, stop, seed=0)
    )


def build(method: str, storage_url: str | None, study: str) -> Strategy:
    ctx = StrategyContext(SPACE, BUDGET, seed=0, storage_url=storage_url, study_name=study)
    if method == "optuna-random":
        return OptunaSearch(SPACE, BUDGET, RandomSampler(seed=0), ctx.goals, storage_url, study)
    return build_strategy(method, ctx)


def timed_asks(strategy: Strategy) -> tuple[list[float], list[float]]:
    asks, tells = [], []
    for _ in range(TIMED):
        t0 = time.perf_counter()
        suggestion = strategy.ask()
        t1 = time.perf_counter()
        assert suggestion is not None
        strategy.tell(suggestion.number, objective(suggestion.params), Outcome.COMPLETED)
        t2 = time.perf_counter()
        asks.append(1000 * (t1 - t0))
        tells.append(1000 * (t2 - t1))
    return asks, tells


def p(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1]


def grow(methods: list[str], url: str, sizes: list[int]) -> Iterator[dict[str, Any]]:
    """One study through ``sizes``: fill up to each size, then per method rebuild the
    strategy on it, step past the trials it replays and time 50 asks (which stay in the
    study, so the second method starts 50 trials later)."""
    have = 0
    for n in sizes:
        t0 = time.perf_counter()
        fill_rdb(url, "bench", have, n)
        filled, have = time.perf_counter() - t0, n
        for method in methods:
            t0 = time.perf_counter()
            strategy = build(method, url, "bench")
            for _ in range(have):  # the trials it already handed out come back first
                assert strategy.ask() is not None
            rebuilt = time.perf_counter() - t0
            asks, tells = timed_asks(strategy)
            yield {
                "method": method,
                "n": have,
                "fill_s": filled,
                "rebuild_s": rebuilt,
                "asks": asks,
                "tells": tells,
            }
            have, filled = have + TIMED, 0.0


def grow_memory(method: str, sizes: list[int]) -> Iterator[dict[str, Any]]:
    """An in-memory study (``storage_url`` None): the sampler's own cost, no storage."""
    strategy = build(method, None, "bench")
    study = strategy.study  # type: ignore[attr-defined]
    have = 0
    for n in sizes:
        t0 = time.perf_counter()
        fill_memory(study, have, n)
        filled = time.perf_counter() - t0
        asks, tells = timed_asks(strategy)
        have = n + TIMED
        yield {"method": method, "n": n, "fill_s": filled, "asks": asks, "tells": tells}


def grow_random(sizes: list[int]) -> Iterator[dict[str, Any]]:
    """spx's RandomSearch keeps no study: filling is N ask/tell pairs."""
    strategy = build("random", None, "bench")
    have = 0
    for n in sizes:
        t0 = time.perf_counter()
        for _ in range(n - have):
            s = strategy.ask()
            assert s is not None
            strategy.tell(s.number, objective(s.params), Outcome.COMPLETED)
        filled = time.perf_counter() - t0
        asks, tells = timed_asks(strategy)
        have = n + TIMED
        yield {"method": "random", "n": n, "fill_s": filled, "asks": asks, "tells": tells}


@contextmanager
def sqlite_url() -> Iterator[str]:
    with tempfile.TemporaryDirectory(prefix="bench-ask-") as tmp:
        url = study_storage_url(f"sqlite:///{Path(tmp) / 'spx.db'}")
        assert url is not None
        yield url


@contextmanager
def postgres_url(base: str) -> Iterator[str]:
    """The study URL of a store in a fresh schema; both schemas are dropped afterwards."""
    schema = f"bench_ask_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    store = sa.make_url(base).update_query_dict({"options": f"-csearch_path={schema}"})
    try:
        url = study_storage_url(store.render_as_string(hide_password=False))
        assert url is not None
        yield url
    finally:
        with admin.connect() as conn:
            for name in (schema, f"{schema}_optuna"):
                conn.execute(sa.text(f'DROP SCHEMA IF EXISTS "{name}" CASCADE'))
        admin.dispose()


def row(storage: str, r: dict[str, Any]) -> str:
    a, t = r["asks"], r["tells"]
    rebuilt = f"{r['rebuild_s']:.1f}" if "rebuild_s" in r else "-"
    return (
        f"| {storage} | {r['method']} | {r['n']:,} | {p(a, 50):.1f} | {p(a, 95):.1f} "
        f"| {max(a):.1f} | {p(t, 50):.1f} | {p(t, 95):.1f} | {r['fill_s']:.1f} | {rebuilt} |"
    )


def load() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="100,1000,5000")
    ap.add_argument("--methods", default="tpe,optuna-random,random")
    ap.add_argument("--postgres", help="PostgreSQL admin URL; a fresh schema is used and dropped")
    args = ap.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    sizes = sorted(int(s) for s in args.sizes.split(","))
    methods = args.methods.split(",")
    studied = [m for m in methods if m != "random"]
    print(f"load average at the start: {load()}", flush=True)
    print(
        "| storage | method | finished trials | ask p50 ms | ask p95 ms | ask max ms "
        "| tell p50 ms | tell p95 ms | fill s | rebuild s |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|", flush=True)
    started = time.perf_counter()
    if "random" in methods:
        for r in grow_random(sizes):
            print(row("none (keeps no study)", r), flush=True)
    for method in studied:
        for r in grow_memory(method, sizes):
            print(row("in memory", r), flush=True)
    with sqlite_url() as url:
        for r in grow(studied, url, sizes):
            print(row("SQLite", r), flush=True)
    if args.postgres:
        with postgres_url(args.postgres) as url:
            for r in grow(studied, url, sizes):
                print(row("PostgreSQL", r), flush=True)
    print(f"\n{time.perf_counter() - started:.0f} s in all; load average at the end: {load()}")


if __name__ == "__main__":
    main()
