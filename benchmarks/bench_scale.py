"""Scale: N one-second trials at C at a time on a simulated multi-node Ray cluster (issue 19).

Run by hand, not a test::

    .venv/bin/python benchmarks/bench_scale.py                            # 100 and 1 000 at 64
    .venv/bin/python benchmarks/bench_scale.py --concurrent 32 --only spx,tune-nolog
    .venv/bin/python benchmarks/bench_scale.py --trials 100,1000,10000
    .venv/bin/python benchmarks/bench_scale.py --trials 1000 --only spx --profile
    .venv/bin/python benchmarks/bench_scale.py --trials 1000 --spx-root /tmp/old-checkout

One Ray cluster is started here with ``ray.cluster_utils.Cluster``: ``--nodes`` nodes of
``--cpus`` logical CPUs each (default 4 x 16), every port chosen free, in a temporary folder
of its own. On it, one after another, each in its own process:

- ``spx``: ``spx sweep launch --plain --address <cluster>`` of a random-search sweep over
  the task ``sleep_task:Nap`` (benchmarks/sleep_task.py: a light trial, whose worker sleeps
  ``--sleep`` s and reports once without importing torch), SQLite store and MLflow on SQLite
  in a temporary SPX_HOME; with ``--spx-root`` also the same from another checkout (the
  "before" of a change: its driver code, this checkout's workers);
- ``tune``: a Ray Tune ``Tuner`` over a function trainable that sleeps and reports once,
  random search (Tune's default searcher), ``max_concurrent_trials=C``, ``reuse_actors=True``;
  ``tune-nolog`` the same without Tune's default per-trial result files
  (``TUNE_DISABLE_AUTO_CALLBACK_LOGGERS=1``).

Each gets: the trial window (first trial's own start to the last trial's end, as in
bench_orchestration.py) against the ideal N x sleep / C; the process wall (start to exit:
imports, joining Ray, for spx also the HTML report); the driver's RSS at the end and its
peak; the steady rate (trials ended per second between the 10th and 90th percentile end,
against C / sleep: the window without the first workers' start-up); and the driver's CPU
milliseconds per trial inside the trial window (sampled every 0.5 s with psutil, split into
its main thread, its other Python threads and Ray's native threads), which is what must
stay flat as N grows. ``--profile`` runs one more spx launch with a cProfile (CPU time) in
each of the driver's threads and lists where they spent it.
"""

from __future__ import annotations

import argparse
import json
import os
import pstats
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import psutil

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from bench_orchestration import PYTHON, SPX, load  # noqa: E402  (the helpers it shares)

TOOLS = ("spx", "tune", "tune-nolog")

SWEEP = """\
name: scale
task: sleep_task:Nap
method: random
seed: 0
trials: {trials}
objective: {{metric: val/loss, goal: minimize}}
fixed: {{model.width: 16, model.depth: 1}}
parameters:
  train.lr: {{min: 1.0e-4, max: 1.0e-1, log: true}}
resources: {{concurrent: {concurrent}, cpus_per_worker: 1}}
"""

# Runs `spx` with a cProfile in every thread (cProfile.Profile.enable covers the calling
# thread only): the hook enables a fresh profile in each new thread at its first call. The
# timer is the thread's CPU time: what the driver spends, not what it waits for.
PROFILED_LAUNCH = """\
import cProfile, sys, threading, time
profiles = [cProfile.Profile(time.thread_time)]
def hook(*_):
    p = cProfile.Profile(time.thread_time); profiles.append(p); p.enable()
threading.setprofile(hook)
profiles[0].enable()
from spx.cli import main
sys.argv = ["spx", *sys.argv[1:]]
try:
    main()
finally:
    for i, p in enumerate(profiles):
        p.disable()
        p.dump_stats(f"{OUT}.{i}")
"""


# ---------------------------------------------------------------- the cluster


def start_cluster(nodes: int, cpus: int, temp: Path) -> Any:
    """A cluster of ``nodes`` x ``cpus`` logical CPUs on this machine (its own temp folder)."""
    import ray._private.utils
    from ray.cluster_utils import Cluster

    # Cluster() records its address in /tmp/ray/ray_current_cluster, where a bare
    # ray.init() of anyone else on this machine would find and join it: not here.
    ray._private.utils.write_ray_address = lambda *a, **k: None
    args = {"num_cpus": cpus, "object_store_memory": 200 * 1024**2}
    head = {**args, "include_dashboard": False, "temp_dir": str(temp)}
    cluster = Cluster(initialize_head=True, head_node_args=head)
    for _ in range(nodes - 1):
        cluster.add_node(**args)
    cluster.wait_for_nodes()
    return cluster


# ---------------------------------------------------------------- the Tune child


def child_tune(trials: int, concurrent: int, sleep: float, root: Path, address: str) -> dict:
    import ray
    from ray import tune

    def trainable(config: dict[str, float]) -> None:
        start = time.time()
        time.sleep(sleep)
        tune.report({"loss": (config["lr"] - 0.01) ** 2, "t0": start, "t1": time.time()})

    ray.init(address=address, log_to_driver=False)
    tuner = tune.Tuner(
        trainable,
        param_space={"lr": tune.loguniform(1e-4, 1e-1)},
        tune_config=tune.TuneConfig(
            metric="loss",
            mode="min",
            num_samples=trials,
            max_concurrent_trials=concurrent,
            reuse_actors=True,
        ),
        run_config=tune.RunConfig(storage_path=str(root), name="tune", verbose=0),
    )
    # The results in memory: without the logger callbacks there are no result files.
    results = [r.metrics for r in tuner.fit() if r.metrics and "loss" in r.metrics]
    ray.shutdown()
    return {
        "done": len(results),
        "first_start": min(float(m["t0"]) for m in results),
        "last_end": max(float(m["t1"]) for m in results),
        "ends": sorted(float(m["t1"]) for m in results),
    }


# ---------------------------------------------------------------- measuring a process


GROUPS = ("main", "python", "native")
"""The driver's threads: its main thread (spx: the trial loop), its other Python threads
(spx: the MLflow and strategy threads; they carry the process's name), and the native ones
(Ray's core worker, gRPC, named by Ray)."""


def thread_cpu(ps: psutil.Process) -> dict[str, float]:
    """CPU seconds of the process's threads so far, by GROUPS."""
    name = Path(f"/proc/{ps.pid}/comm").read_text().strip()
    out = dict.fromkeys(GROUPS, 0.0)
    for t in ps.threads():
        try:
            comm = Path(f"/proc/{ps.pid}/task/{t.id}/comm").read_text().strip()
        except OSError:
            continue
        group = "main" if t.id == ps.pid else "python" if comm == name else "native"
        out[group] += t.user_time + t.system_time
    return out


def watched(cmd: list[str], env: dict[str, str], cwd: Path, log: Path) -> dict:
    """Run ``cmd``; its wall time and (time, CPU s, RSS, CPU s by thread group) samples of
    it every 0.5 s."""
    samples: list[tuple[float, float, int, dict[str, float]]] = []
    began, start = time.time(), time.perf_counter()
    with log.open("w") as out:
        proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT)
        ps = psutil.Process(proc.pid)
        while proc.poll() is None:
            try:
                with ps.oneshot():
                    cpu, rss = ps.cpu_times(), ps.memory_info().rss
                    groups = thread_cpu(ps)
                samples.append((time.time(), cpu.user + cpu.system, rss, groups))
            except (psutil.Error, OSError):
                pass
            time.sleep(0.5)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd[:4])} exited {proc.returncode}; see {log}")
    samples = [x for x in samples if x[2] > 0]  # an exiting process reads as zeros
    return {"wall": wall, "samples": samples, "began": began, "ended": began + wall}


def at(series: list[tuple[float, float]], when: float) -> float:
    """A (time, value) series' value at time ``when`` (linear between samples)."""
    before = [s for s in series if s[0] <= when]
    after = [s for s in series if s[0] >= when]
    if not before:
        return series[0][1]
    if not after:
        return series[-1][1]
    (t0, c0), (t1, c1) = before[-1], after[0]
    return c0 if t1 == t0 else c0 + (c1 - c0) * (when - t0) / (t1 - t0)


def summary(run: dict, trials: int) -> dict:
    samples = run.pop("samples")
    t0, t1 = run["first_start"], run["last_end"]

    def in_window(series: list[tuple[float, float]]) -> float:
        return 1000 * (at(series, t1) - at(series, t0)) / trials

    by_group = {g: in_window([(s[0], s[3][g]) for s in samples]) for g in GROUPS}
    # After the last trial: what each thread group spent (spx: the MLflow backlog is the
    # Python threads, the HTML report the main thread).
    tail = {g: samples[-1][3][g] - at([(s[0], s[3][g]) for s in samples], t1) for g in GROUPS}
    # Steady state: trials ended per second between the 10th and the 90th percentile end,
    # against the C / sleep the slots allow (the ramp-up of the first workers left out).
    ends = run.pop("ends")
    lo, hi = ends[len(ends) // 10], ends[(9 * len(ends)) // 10]
    steady = (hi - lo) and ((9 * len(ends)) // 10 - len(ends) // 10) / (hi - lo)
    return {
        **run,
        "rss_end": samples[-1][2] if samples else 0,
        "rss_peak": max((s[2] for s in samples), default=0),
        "cpu_total": samples[-1][1] if samples else 0.0,
        "cpu_per_trial_ms": in_window([(s[0], s[1]) for s in samples]),
        "cpu_by_thread_ms": by_group,
        "steady_rate": steady,
        "tail_cpu_s": tail,
    }


# ---------------------------------------------------------------- the two systems


def spx_env(home: Path, root: Path | None, sleep: float) -> dict[str, str]:
    path = [str(HERE)] + ([str(root)] if root else []) + [os.environ.get("PYTHONPATH", "")]
    env = {**os.environ, "SPX_HOME": str(home), "PYTHONPATH": os.pathsep.join(p for p in path if p)}
    return {**env, "SPX_BENCH_SLEEP_S": str(sleep)}


def run_spx(
    args: argparse.Namespace, trials: int, root: Path, address: str, spx_root: Path | None = None
) -> dict:
    (root / "sweep.yaml").write_text(SWEEP.format(trials=trials, concurrent=args.concurrent))
    env = spx_env(root / "home", spx_root, args.sleep)
    cmd = [SPX, "sweep", "launch", "sweep.yaml", "--plain", "--address", address]
    if spx_root is not None:  # that checkout's CLI, not this venv's entry point
        cmd = [PYTHON, "-c", "from spx.cli import main; main()", *cmd[1:]]
    run = watched(cmd, env, root, root / "spx.log")
    return summary({**run, **spx_window(root / "home", trials)}, trials)


def spx_window(home: Path, trials: int) -> dict:
    """First trial's own start (its worker.pid) to the last finished_at, from the store."""
    from spx.platform.store import Store

    with Store.open(f"sqlite:///{home / 'spx.db'}") as store:
        sweep = store.get_sweep("scale")
        rows = store.trials(sweep.id)
    folder = next((home / "checkpoints").iterdir())
    starts = [(folder / f"trial-{t.number:05d}" / "worker.pid").stat().st_mtime for t in rows]
    ends = [t.finished_at.timestamp() for t in rows if t.finished_at is not None]
    return {
        "done": sum(t.status == "COMPLETED" for t in rows),
        "first_start": min(starts),
        "last_end": max(ends),
        "ends": sorted(ends),
        "sweep_finished": sweep.finished_at.timestamp() if sweep.finished_at else None,
        "mlflow_runs": mlflow_runs(home),
    }


def mlflow_runs(home: Path) -> int:
    """Trial runs MLflow holds, FINISHED, with their metric (the parent run not counted)."""
    import sqlite3

    with sqlite3.connect(home / "mlflow.db") as db:
        (n,) = db.execute(
            "SELECT count(*) FROM runs r JOIN latest_metrics m ON m.run_uuid = r.run_uuid "
            "WHERE r.status = 'FINISHED' AND m.key = 'val/loss' AND r.name LIKE 'trial-%'"
        ).fetchone()
    return int(n)


def run_tune(
    args: argparse.Namespace, trials: int, root: Path, address: str, nolog: bool = False
) -> dict:
    out = root / "result.json"
    cmd = [PYTHON, __file__, "--child", "tune", "--trials", str(trials), "--address", address]
    cmd += ["--concurrent", str(args.concurrent), "--sleep", str(args.sleep), "--out", str(out)]
    env = dict(os.environ)
    if nolog:  # without Tune's default per-trial CSV, JSON and TensorBoard files
        env["TUNE_DISABLE_AUTO_CALLBACK_LOGGERS"] = "1"
    run = watched(cmd, env, root, root / "tune.log")
    return summary({**run, **json.loads(out.read_text())}, trials)


# ---------------------------------------------------------------- the driver's profile

# What the profile lists: the driver's own code, MLflow's client, Ray's waits, SQLAlchemy's
# commits (a row each, ranked by cumulative time over all threads).
_PROFILED = ("/platform/", "/search/", "mlflow/tracking/client.py", "ray/_private/worker.py")
_CALLS = ("wait", "get", "commit")


def profile_table(files: list[Path], trials: int, rows: int = 30) -> str:
    """The ``rows`` functions of interest with the most cumulative time, all threads summed."""
    stats = pstats.Stats(*(str(f) for f in files)).stats  # type: ignore[attr-defined]
    picked = []
    for (file, _line, func), (_, calls, _, cum, _) in stats.items():
        ours = any(part in file for part in _PROFILED[:3])
        if ours or (func in _CALLS and ("ray/" in file or "sqlalchemy/orm/session" in file)):
            picked.append((cum, calls, f"{Path(file).parent.name}/{Path(file).name}:{func}"))
    lines = ["| function | calls | CPU s (cumulative) | ms per trial |", "|---|---:|---:|---:|"]
    for cum, calls, name in sorted(picked, reverse=True)[:rows]:
        lines.append(f"| {name} | {calls} | {cum:.2f} | {1000 * cum / trials:.2f} |")
    return "\n".join(lines)


def run_profiled(args: argparse.Namespace, trials: int, root: Path, address: str) -> str:
    (root / "sweep.yaml").write_text(SWEEP.format(trials=trials, concurrent=args.concurrent))
    env = spx_env(root / "home", None, args.sleep)
    out = root / "spx.prof"
    code = PROFILED_LAUNCH.replace("OUT", repr(str(out)))
    cmd = [PYTHON, "-c", code, "sweep", "launch", "sweep.yaml", "--plain"]
    run = watched([*cmd, "--address", address], env, root, root / "spx.log")
    files = sorted(root.glob("spx.prof.*"))
    head = f"spx under cProfile, {trials} trials: {run['wall']:.1f} s, {len(files)} threads"
    return head + "\n" + profile_table(files, trials)


# ---------------------------------------------------------------- output


def table(results: list[tuple[str, int, dict]], args: argparse.Namespace) -> str:
    lines = [
        "| system | trials | done | ideal s | trial window s | vs ideal | process wall s "
        "| steady trials/s (ideal) | start -> first trial s | last trial -> exit s "
        "| driver RSS end / peak MB | driver CPU ms per trial (main + Python + native "
        "threads) | driver CPU s total |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for system, n, r in results:
        ideal = n * args.sleep / args.concurrent
        window = r["last_end"] - r["first_start"]
        done = f"{r['done']}" + (f" ({r['mlflow_runs']} in MLflow)" if "mlflow_runs" in r else "")
        split = " + ".join(f"{r['cpu_by_thread_ms'][g]:.1f}" for g in GROUPS)
        lines.append(
            f"| {system} | {n} | {done} | {ideal:.1f} | {window:.1f} | "
            f"{100 * (window / ideal - 1):+.1f} % | {r['wall']:.1f} | "
            f"{r['steady_rate']:.1f} ({args.concurrent / args.sleep:.0f}) | "
            f"{r['first_start'] - r['began']:.1f} | {r['ended'] - r['last_end']:.1f} | "
            f"{r['rss_end'] / 2**20:.0f} / {r['rss_peak'] / 2**20:.0f} | "
            f"{r['cpu_per_trial_ms']:.1f} ({split}) | {r['cpu_total']:.1f} |"
        )
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--trials", default="100,1000", help="comma list of N")
    p.add_argument("--concurrent", type=int, default=64)
    p.add_argument("--nodes", type=int, default=4)
    p.add_argument("--cpus", type=int, default=16, help="logical CPUs per node")
    p.add_argument("--sleep", type=float, default=1.0)
    p.add_argument("--only", default=",".join(TOOLS), help=f"comma list of {TOOLS}")
    p.add_argument("--spx-root", type=Path, help="also run spx's driver from this checkout")
    p.add_argument("--profile", action="store_true", help="one more spx run, under cProfile")
    p.add_argument("--keep", action="store_true", help="keep the temporary folders")
    p.add_argument("--json", type=Path, help="also write the results to this file")
    p.add_argument("--child", choices=["tune"], help=argparse.SUPPRESS)
    p.add_argument("--address", help=argparse.SUPPRESS)
    p.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        trials = int(args.trials)
        result = child_tune(trials, args.concurrent, args.sleep, args.out.parent, args.address)
        args.out.write_text(json.dumps(result))
        return
    if args.nodes * args.cpus < args.concurrent:
        raise SystemExit(f"--nodes x --cpus = {args.nodes * args.cpus} < --concurrent")
    sizes = [int(n) for n in args.trials.split(",") if n]
    systems = [t for t in args.only.split(",") if t]
    if args.spx_root is not None and "spx" in systems:
        systems.insert(systems.index("spx"), "spx-before")
    # The workers import sleep_task (and the driver's checkout for spx-before: none; they
    # run this checkout's worker code, which a driver-side change leaves alone).
    os.environ["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(HERE), os.environ.get("PYTHONPATH", "")) if p
    )
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    temp = Path(tempfile.mkdtemp(prefix="spxscale-", dir="/tmp"))  # short: socket paths
    began = time.perf_counter()
    cluster = start_cluster(args.nodes, args.cpus, temp)
    print(
        f"cluster: {args.nodes} nodes x {args.cpus} CPUs at {cluster.address} in "
        f"{time.perf_counter() - began:.1f} s; {psutil.cpu_count()} cores, "
        f"{psutil.virtual_memory().total / 2**30:.0f} GiB; load {load()}",
        flush=True,
    )
    results: list[tuple[str, int, dict]] = []
    try:
        for n in sizes:
            for system in systems:
                root = Path(tempfile.mkdtemp(prefix=f"bench-scale-{system}-{n}-"))
                print(f"{system} x {n}: running in {root} (load {load()})", flush=True)
                if system.startswith("tune"):
                    r = run_tune(args, n, root, cluster.address, nolog=system == "tune-nolog")
                else:
                    before = args.spx_root if system == "spx-before" else None
                    r = run_spx(args, n, root, cluster.address, before)
                results.append((system, n, r))
                window = r["last_end"] - r["first_start"]
                print(
                    f"{system} x {n}: wall {r['wall']:.1f} s, window {window:.1f} s, "
                    f"{r['cpu_per_trial_ms']:.1f} ms CPU per trial (load {load()})",
                    flush=True,
                )
                if not args.keep:
                    shutil.rmtree(root, ignore_errors=True)
        profile = None
        if args.profile:
            root = Path(tempfile.mkdtemp(prefix="bench-scale-profile-"))
            profile = run_profiled(args, sizes[-1], root, cluster.address)
            print(f"(profile files in {root})")
    finally:
        cluster.shutdown()
        shutil.rmtree(temp, ignore_errors=True)
    print()
    print(table(results, args))
    if args.json:
        rows = [{"system": system, "trials": n, **r} for system, n, r in results]
        args.json.write_text(json.dumps(rows, indent=1))
    ideal = f"N x {args.sleep} s / {args.concurrent}"
    print(f"\nideal: {ideal}; cluster {args.nodes} x {args.cpus} logical CPUs")
    print("\nafter the last trial (CPU s of the main / Python / native threads):")
    for system, n, r in results:
        cpu = " / ".join(f"{r['tail_cpu_s'][g]:.1f}" for g in GROUPS)
        line = f"  {system} x {n}: {r['ended'] - r['last_end']:.1f} s to exit, CPU {cpu}"
        if r.get("sweep_finished"):  # spx: the trial loop (and MLflow backlog) ended here
            loop = r["sweep_finished"] - r["last_end"]
            line += f"; sweep row finished {loop:.1f} s after the last trial"
        print(line)
    if profile:
        print("\n" + profile)
    print(f"\nload average at the end: {load()}")


if __name__ == "__main__":
    threading.current_thread().name = "bench"
    main()
