"""Wall times of the CLI's quick paths, side by side, each a fresh ``spx`` subprocess:

    .venv/bin/python benchmarks/bench_cli.py                  # median of 3 runs each
    .venv/bin/python benchmarks/bench_cli.py --runs 5 --importtime
    .venv/bin/python benchmarks/bench_cli.py --before /tmp/old/pkg   # and an older tree's

| command | goal (issue 16) |
|---|---|
| ``spx sweep show NAME --pareto`` | 2 s |
| ``spx analyze scaling-law NAME`` (journey law, default bootstrap) | 3 s |
| ``spx sweep resume NAME`` of a sweep that completed | 3 s |
| ``spx ui`` until ``GET /health`` answers | 10 s |

The store is built here, in a temporary SPX_HOME, as the read-side tests build theirs
(tests/dashboards): a completed two-objective sweep of ``--trials`` trials written through
``Store``, whose losses follow a Chinchilla-like law in params_avg and tokens with 1 % noise,
and an MLflow database created by MLflow itself (so ``spx ui`` times serving, not MLflow's
first migrations). Resuming a completed sweep reads only its row and its trials, so this
sweep is the same input as a launched one.

``--before DIR`` also times each command with ``PYTHONPATH=DIR``: a tree shaped like the
installed package (``spx/`` with ``platform``, ``workers``, ... linked in, as ``make
typecheck`` builds), e.g. of ``git archive HEAD``. Its resume may start Ray and rewrite the
row; its ``spx ui`` may leave servers behind, so every run's processes are stopped.
``--importtime`` prints the slowest imports of each command (``python -X importtime``).
"""

from __future__ import annotations

import argparse
import logging
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np

from spx.cli_ui import stop_group
from spx.platform.store import Store, SweepStatus, TrialStatus

SPX = str(Path(sys.executable).with_name("spx"))
NAME = "bench-cli"
SPEC = """name: bench-cli
task: digits-mlp
method: grid
fixed: {train.report_every: 5}
parameters:
  model.width: {values: [16, 32, 64, 128]}
  train.steps: {values: [100, 400, 1600]}
objective:
  - {metric: val/loss, goal: minimize}
  - {metric: model/params_avg, goal: minimize}
"""
GOALS = {"show --pareto": 2.0, "analyze scaling-law": 3.0, "resume (completed)": 3.0, "ui": 10.0}


def build(home: Path, trials: int) -> None:
    """The completed sweep NAME in ``home``'s store, and ``home``'s MLflow database."""
    rng = np.random.default_rng(0)
    with Store.open(f"sqlite:///{home / 'spx.db'}") as store:
        sweep = store.create_sweep(NAME, task="digits-mlp", method="grid", spec_text=SPEC,
                                   spec_hash="0" * 64)  # fmt: skip
        for number in range(trials):
            width, steps = int(rng.choice([16, 32, 64, 128])), int(rng.choice([100, 400, 1600]))
            n, d = 12.0 * width**2, 64.0 * steps
            loss = (1.5 + 50 / n**0.3 + 400 / d**0.3) * float(np.exp(0.01 * rng.normal()))
            metrics = {"val/loss": loss, "val/acc": 1 / loss, "model/params": n,
                       "model/params_avg": n, "data/tokens": d}  # fmt: skip
            trial = store.add_trial(sweep.id, number, {"model.width": width, "train.steps": steps})
            store.update_trial(trial.id, status=TrialStatus.COMPLETED, metrics=metrics,
                               started=True, finished=True)  # fmt: skip
        store.update_sweep(sweep.id, status=SweepStatus.COMPLETED, started=True, finished=True)
    from mlflow.tracking import MlflowClient

    logging.getLogger("mlflow").setLevel(logging.WARNING)  # its "Creating tables" lines
    MlflowClient(tracking_uri=f"sqlite:///{home / 'mlflow.db'}").search_experiments()


def _env(home: Path, pythonpath: str | None) -> dict[str, str]:
    env = {**os.environ, "SPX_HOME": str(home), "SPX_STORE_URL": "", "MLFLOW_TRACKING_URI": ""}
    env.pop("PYTHONPATH", None)
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
    return env


def time_command(args: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    proc = subprocess.run([SPX, *args], env=env, capture_output=True, text=True, timeout=600)
    took = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"spx {' '.join(args)} exited {proc.returncode}:\n{proc.stderr[-2000:]}")
    return took


def time_ui(env: dict[str, str]) -> float:
    """Seconds from starting ``spx ui`` to its first answered ``GET /health``."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    started = time.perf_counter()
    proc = subprocess.Popen([SPX, "ui", "--port", str(port)], env=env, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5):
                    return time.perf_counter() - started
            except OSError:
                if proc.poll() is not None:
                    raise SystemExit(f"spx ui exited {proc.returncode} before serving") from None
                time.sleep(0.05)
    finally:  # spx ui, its group and every descendant: an older spx ui left servers behind
        stop_group(proc)


COMMANDS = {
    "show --pareto": ["sweep", "show", NAME, "--pareto"],
    "analyze scaling-law": ["analyze", "scaling-law", NAME],
    "resume (completed)": ["sweep", "resume", NAME, "--plain"],
}


def measure(home: Path, runs: int, pythonpath: str | None) -> dict[str, float]:
    env = _env(home, pythonpath)
    medians = {}
    for label, args in COMMANDS.items():
        medians[label] = statistics.median(time_command(args, env) for _ in range(runs))
    medians["ui"] = statistics.median(time_ui(env) for _ in range(runs))
    return medians


def slowest_imports(home: Path, args: list[str], top: int = 6) -> list[tuple[str, float]]:
    """The ``top`` top-level imports of ``spx ARGS`` by cumulative seconds."""
    cmd = [sys.executable, "-X", "importtime", "-m", "spx", *args]
    proc = subprocess.run(cmd, env=_env(home, None), capture_output=True, text=True)
    found = []
    for line in proc.stderr.splitlines():
        if not line.startswith("import time:") or "cumulative" in line:
            continue
        _, cumulative, name = line[len("import time:") :].split("|")
        if not name.startswith("  "):  # top level: imported by spx's own code, not a library
            found.append((name.strip(), int(cumulative) / 1e6))
    return sorted(found, key=lambda f: -f[1])[:top]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--trials", type=int, default=300)
    parser.add_argument("--before", help="PYTHONPATH of an older tree to time as well")
    parser.add_argument("--importtime", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="spx-bench-cli-") as tmp:
        home = Path(tmp) / "home"
        home.mkdir()
        build(home, args.trials)
        after = measure(home, args.runs, None)
        before = measure(home, args.runs, args.before) if args.before else None
        print(f"\n{args.trials} trials, median of {args.runs} runs, seconds\n")
        head = "| command | goal |" + (" before |" if before else "") + " now | met |"
        print(head)
        print("|---|---:|" + ("---:|" if before else "") + "---:|---|")
        for label, goal in GOALS.items():
            then = f" {before[label]:.2f} |" if before else ""
            met = "yes" if after[label] <= goal else f"no (+{after[label] - goal:.2f} s)"
            print(f"| {label} | {goal:g} |{then} {after[label]:.2f} | {met} |")
        if args.importtime:
            for label, cmd in COMMANDS.items():
                shown = ", ".join(f"{n} {s:.2f}" for n, s in slowest_imports(home, cmd))
                print(f"\nslowest imports of {label}: {shown}")


if __name__ == "__main__":
    main()
