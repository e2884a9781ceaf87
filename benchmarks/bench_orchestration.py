"""Orchestration overhead: N trials that each sleep 0.5 s, two at a time (issue 6).

Run by hand, not a test::

    .venv/bin/python benchmarks/bench_orchestration.py                 # 200 trials, ~17 min here
    .venv/bin/python benchmarks/bench_orchestration.py --trials 20     # a quick look
    .venv/bin/python benchmarks/bench_orchestration.py --trials 40 --only spx --profile

Runs, one after another on the same machine, each in its own process:

- ``spx``: ``spx sweep launch --plain`` of a TPE sweep over the task ``sleep_task:Sleep``
  (one training step that sleeps; ``train.steps: 1``, ``report_every: 1``) on the embedded
  stack: local Ray, SQLite store, MLflow on SQLite, in a temporary SPX_HOME;
- ``tune``: a Ray Tune ``Tuner`` with ``OptunaSearch`` (TPE) behind a
  ``ConcurrencyLimiter(max_concurrent=2)``, a function trainable that sleeps and reports one
  metric; Tune's defaults otherwise (a fresh actor per trial). ``tune-reuse`` is the same with
  ``reuse_actors=True``;
- ``optuna``: ``study.optimize(objective, n_jobs=2)`` in memory, the objective sleeps.

Each gets its process wall time (start to exit: Ray start-up, imports and, for spx, the
HTML report after the sweep included) and its trial window, from the moment the first
trial began its own work to the last trial's end (spx: the trial's ``worker.pid``, written
by the Ray task once its imports are done, to the store's last ``finished_at``; Tune: stamps
taken inside the trainable; Optuna: ``datetime_start``/``datetime_complete``). For spx the
store window (first ``started_at`` to last ``finished_at``, both stamped by the driver) is
given too: it also holds the first Ray workers' start-up (importing torch). The ideal is
N x sleep / concurrency. For spx a warm trial's turnaround is split into phases from the
store's stamps and the trial folder's files, and ``--profile`` runs one more spx launch under
cProfile and lists what the driver spent its time on (cProfile slows Python-heavy calls, so
read that table for ranking, the phases for milliseconds). cProfile sees the driver's main
thread only: what the bookkeeping thread does (MLflow, the strategy's ask and tell) shows
as zero there; the phases time it.
"""

from __future__ import annotations

import argparse
import json
import os
import pstats
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
PYTHON = sys.executable
SPX = str(Path(PYTHON).with_name("spx"))
TOOLS = ("spx", "tune", "tune-reuse", "optuna")

SWEEP = """\
name: orchestration
task: sleep_task:Sleep
method: tpe
seed: 0
trials: {trials}
objective: {{metric: val/loss, goal: minimize}}
fixed: {{train.steps: 1, train.report_every: 1, model.width: 16, model.depth: 1}}
parameters:
  train.lr: {{min: 1.0e-4, max: 1.0e-1, log: true}}
resources: {{concurrent: {concurrent}, cpus_per_worker: 1}}
"""


# ---------------------------------------------------------------- children (one per tool)


def child_tune(trials: int, concurrent: int, sleep: float, reuse: bool, root: Path) -> dict:
    import ray
    from ray import tune
    from ray.tune.search import ConcurrencyLimiter
    from ray.tune.search.optuna import OptunaSearch

    def trainable(config: dict[str, float]) -> None:
        start = time.time()
        time.sleep(sleep)
        tune.report({"loss": (config["lr"] - 0.01) ** 2, "t0": start, "t1": time.time()})

    ray.init(include_dashboard=False, log_to_driver=False)
    searcher = ConcurrencyLimiter(OptunaSearch(seed=0), max_concurrent=concurrent)
    tuner = tune.Tuner(
        trainable,
        param_space={"lr": tune.loguniform(1e-4, 1e-1)},
        tune_config=tune.TuneConfig(
            metric="loss",
            mode="min",
            search_alg=searcher,
            num_samples=trials,
            max_concurrent_trials=concurrent,
            reuse_actors=reuse,
        ),
        run_config=tune.RunConfig(storage_path=str(root), name="tune", verbose=0),
    )
    grid = tuner.fit()
    frame = grid.get_dataframe()
    ray.shutdown()
    return {
        "done": int(frame["loss"].notna().sum()),
        "first_start": float(frame["t0"].min()),
        "last_end": float(frame["t1"].max()),
    }


def child_optuna(trials: int, concurrent: int, sleep: float) -> dict:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)

    def objective(trial: optuna.Trial) -> float:
        lr = trial.suggest_float("lr", 1e-4, 1e-1, log=True)
        time.sleep(sleep)
        return (lr - 0.01) ** 2

    study = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=0))
    study.optimize(objective, n_trials=trials, n_jobs=concurrent)
    spans = [
        (t.datetime_start.timestamp(), t.datetime_complete.timestamp())
        for t in study.trials
        if t.datetime_start is not None and t.datetime_complete is not None
    ]
    return {
        "done": len(spans),
        "first_start": min(start for start, _ in spans),
        "last_end": max(end for _, end in spans),
    }


# ---------------------------------------------------------------- the parent


def timed(cmd: list[str], env: dict[str, str], cwd: Path, log: Path) -> float:
    start = time.perf_counter()
    with log.open("w") as out:
        proc = subprocess.run(cmd, env=env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd[:4])} exited {proc.returncode}; see {log}")
    return wall


def spx_env(home: Path) -> dict[str, str]:
    path = os.pathsep.join(p for p in (str(HERE), os.environ.get("PYTHONPATH", "")) if p)
    return {**os.environ, "SPX_HOME": str(home), "PYTHONPATH": path}


def run_spx(args: argparse.Namespace, root: Path, profile: Path | None = None) -> dict:
    (root / "sweep.yaml").write_text(SWEEP.format(trials=args.trials, concurrent=args.concurrent))
    env = {**spx_env(root / "home"), "SPX_BENCH_SLEEP_S": str(args.sleep)}
    launch = [SPX, "sweep", "launch", "sweep.yaml", "--plain"]
    pre = [PYTHON, "-m", "cProfile", "-o", str(profile)] if profile else []
    wall = timed(pre + launch, env, root, root / "spx.log")
    return {"wall": wall, **spx_window(root / "home")}


def spx_window(home: Path) -> dict:
    """The trial window and a trial's turnaround in phases, from the store and its folder."""
    from spx.platform.store import Store

    with Store.open(f"sqlite:///{home / 'spx.db'}") as store:
        sweep = store.get_sweep("orchestration")
        trials = store.trials(sweep.id)
    folder = next((home / "checkpoints").iterdir())
    rows = []
    for t in trials:
        assert t.started_at and t.finished_at, f"trial {t.number} did not finish"
        d = folder / f"trial-{t.number:05d}"
        rows.append(
            {
                "created": t.created_at.timestamp(),
                "started": t.started_at.timestamp(),
                "worker": (d / "worker.pid").stat().st_mtime,
                "reported": (d / "reports.jsonl").stat().st_mtime,
                "finished": t.finished_at.timestamp(),
            }
        )
    return {
        "done": sum(t.status == "COMPLETED" for t in trials),
        "first_start": min(r["worker"] for r in rows),
        "last_end": max(r["finished"] for r in rows),
        "store_window": max(r["finished"] for r in rows) - min(r["started"] for r in rows),
        "phases": phases(rows),
        "slots_start": sorted(r["worker"] for r in rows)[:2],
    }


def phases(rows: list[dict[str, float]]) -> dict[str, tuple[float, float]]:
    """Median and mean ms of each phase of a trial, after the first round (warm Ray workers)."""
    ends = sorted(r["finished"] for r in rows)
    warm = [r for r in rows if r["started"] > ends[0]]
    gaps = []
    for r in warm:  # the driver's turnaround: the slot's previous trial ended -> this one runs
        before = [e for e in ends if e <= r["created"]]
        gaps.append(r["created"] - before[-1])
    spans = {
        "previous trial ended -> add_trial (driver: takes the suggestion asked ahead)": gaps,
        "add_trial -> started_at (store: the trial is RUNNING)": [
            r["started"] - r["created"] for r in warm
        ],
        "started_at -> worker runs (Ray task submission)": [
            r["worker"] - r["started"] for r in warm
        ],
        "worker runs -> report written (build, 0.5 s step, checkpoint, eval)": [
            r["reported"] - r["worker"] for r in warm
        ],
        "report -> finished_at (final eval, return, driver stores report and end)": [
            r["finished"] - r["reported"] for r in warm
        ],
    }
    return {
        k: (1000 * statistics.median(v), 1000 * statistics.fmean(v)) for k, v in spans.items() if v
    }


def run_child(tool: str, args: argparse.Namespace, root: Path) -> dict:
    out = root / "result.json"
    cmd = [PYTHON, __file__, "--child", tool, "--trials", str(args.trials)]
    cmd += ["--concurrent", str(args.concurrent), "--sleep", str(args.sleep), "--out", str(out)]
    wall = timed(cmd, dict(os.environ), root, root / f"{tool}.log")
    return {"wall": wall, **json.loads(out.read_text())}


# ---------------------------------------------------------------- the driver's profile

# (label, function): where the driver's time goes. Rows starting with two spaces are inside
# the trial loop; "other" is the loop's time not in any row above it.
PROFILED = [
    ("whole CLI run (`spx sweep launch`)", "spx.cli:launch"),
    ("Ray start (Driver.prepare)", "spx.platform.driver:Driver.prepare"),
    (
        "MLflow client (Tracker.__init__: import, DB migrations)",
        "spx.platform.tracking:Tracker.__init__",
    ),
    ("trial loop (Scheduler.run)", "spx.platform.scheduler:Scheduler.run"),
    ("  ray.wait (idle: trials run)", "ray:wait"),
    ("  strategy.ask (TPE on the SQLite study)", "spx.search.optuna_search:OptunaSearch.ask"),
    ("  strategy.tell", "spx.search.optuna_search:OptunaSearch.tell"),
    ("  store.add_trial", "spx.platform.store:Store.add_trial"),
    ("  store.update_trial", "spx.platform.store:Store.update_trial"),
    ("  store.upsert_metrics", "spx.platform.store:Store.upsert_metrics"),
    ("  MLflow start_run (create_run + log params)", "spx.platform.tracking:Tracker.start_run"),
    ("  MLflow log_text (trial_config.json artifact)", "spx.platform.tracking:Tracker.log_text"),
    ("  MLflow log_metrics", "spx.platform.tracking:Tracker.log_metrics"),
    ("  MLflow log_table", "spx.platform.tracking:Tracker.log_table"),
    ("  MLflow set_tags", "spx.platform.tracking:Tracker.set_tags"),
    ("  MLflow end_run", "spx.platform.tracking:Tracker.end_run"),
    (
        "  draining reports (one inbox call per turn, store writes)",
        "spx.platform.scheduler:Scheduler._drain",
    ),
    ("  Ray task submission (runner.submit)", "spx.platform.runner:submit"),
    ("  stop requests (lifecycle.Watch.poll)", "spx.platform.lifecycle:Watch.poll"),
    ("  display", "spx.platform.progress:PlainDisplay.finished"),
    ("HTML report after the sweep (cli._write_report)", "spx.cli:_write_report"),
]


def code_key(target: str) -> tuple[str, int, str]:
    """pstats' key (file, first line, name) of ``module:qualname``."""
    import importlib
    import inspect

    module, qualname = target.split(":")
    obj: Any = importlib.import_module(module)
    for part in qualname.split("."):
        obj = getattr(obj, part)
    code = inspect.unwrap(obj).__code__
    return code.co_filename, code.co_firstlineno, code.co_name


def profile_table(path: Path, trials: int) -> str:
    stats = pstats.Stats(str(path)).stats  # type: ignore[attr-defined]
    lines = ["| driver time in | calls | total s | ms per trial |", "|---|---:|---:|---:|"]
    loop, inside = 0.0, 0.0
    for label, target in PROFILED:
        hit = stats.get(code_key(target))
        if hit is None:
            continue
        calls, cum = hit[1], hit[3]
        if target.endswith("Scheduler.run"):
            loop = cum
        elif label.startswith("  "):
            inside += cum
        lines.append(f"| {label} | {calls} | {cum:.2f} | {1000 * cum / trials:.1f} |")
        if label.startswith("  display"):
            other = loop - inside
            lines.append(f"|   other | | {other:.2f} | {1000 * other / trials:.1f} |")
    return "\n".join(lines)


# ---------------------------------------------------------------- output


def table(results: dict[str, dict], args: argparse.Namespace) -> str:
    ideal = args.trials * args.sleep / args.concurrent
    lines = [
        "| tool | trials done | process wall s | vs ideal | store window s | vs ideal "
        "| trial window s | vs ideal | overhead per trial ms |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for tool, r in results.items():
        window = r["last_end"] - r["first_start"]
        per_trial = 1000 * (window - ideal) * args.concurrent / args.trials
        store = r.get("store_window")
        stored = f"{store:.1f} | {100 * (store / ideal - 1):+.0f} %" if store else "- | -"
        lines.append(
            f"| {tool} | {r['done']}/{args.trials} | {r['wall']:.1f} | "
            f"{100 * (r['wall'] / ideal - 1):+.0f} % | {stored} | {window:.1f} | "
            f"{100 * (window / ideal - 1):+.0f} % | {per_trial:.0f} |"
        )
    lines.append(f"\nideal: {args.trials} x {args.sleep} s / {args.concurrent} = {ideal:.1f} s")
    names = list(results)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            ra, rb = results[a], results[b]
            wa, wb = ra["last_end"] - ra["first_start"], rb["last_end"] - rb["first_start"]
            lines.append(
                f"{a} / {b}: process wall {ra['wall'] / rb['wall']:.2f}x, "
                f"trial window {wa / wb:.2f}x"
            )
    return "\n".join(lines)


def load() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--trials", type=int, default=200)
    p.add_argument("--concurrent", type=int, default=2)
    p.add_argument("--sleep", type=float, default=0.5)
    p.add_argument("--only", default=",".join(TOOLS), help=f"comma list of {TOOLS}")
    p.add_argument("--profile", action="store_true", help="one more spx run, under cProfile")
    p.add_argument("--keep", action="store_true", help="keep the temporary folders")
    p.add_argument("--child", choices=TOOLS[1:], help=argparse.SUPPRESS)
    p.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        if args.child == "optuna":
            result = child_optuna(args.trials, args.concurrent, args.sleep)
        else:
            reuse = args.child == "tune-reuse"
            root = args.out.parent
            result = child_tune(args.trials, args.concurrent, args.sleep, reuse, root)
        args.out.write_text(json.dumps(result))
        return
    tools = [t for t in args.only.split(",") if t]
    results: dict[str, dict] = {}
    for tool in tools:
        root = Path(tempfile.mkdtemp(prefix=f"bench-orch-{tool}-"))
        print(f"{tool}: running in {root} (load {load()})", flush=True)
        results[tool] = run_spx(args, root) if tool == "spx" else run_child(tool, args, root)
        print(f"{tool}: {results[tool]['wall']:.1f} s (load {load()})", flush=True)
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    print()
    print(table(results, args))
    if "spx" in results:
        print("\nspx, ms per warm trial in each phase (median, mean):")
        for name, (ms, mean) in results["spx"]["phases"].items():
            print(f"  {ms:7.1f} {mean:7.1f}  {name}")
        first, second = results["spx"]["slots_start"]
        print(f"  the second slot's first trial began {second - first:.2f} s after the first's")
    if args.profile:
        root = Path(tempfile.mkdtemp(prefix="bench-orch-profile-"))
        prof = root / "spx.prof"
        run = run_spx(args, root, profile=prof)
        print(f"\nspx under cProfile: {run['wall']:.1f} s (load {load()}); {prof}")
        print(profile_table(prof, args.trials))
    print(f"\nload average at the end: {load()}")


if __name__ == "__main__":
    main()
