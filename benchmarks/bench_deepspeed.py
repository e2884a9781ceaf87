"""``engine: deepspeed`` vs the torch engine: first-use cost and time per training step.

    .venv/bin/python benchmarks/bench_deepspeed.py [--threads 1] [--rounds 15] [--steps 20]
        [--no-cold]

First use: DeepSpeed JIT-builds its shared-memory communication op the first time an engine
starts on a machine (cached under ~/.cache/torch_extensions afterwards); the cold build is
timed in a subprocess with an empty ``TORCH_EXTENSIONS_DIR``, so the real cache is left as
it is. Then the import and a warm ``deepspeed.initialize`` are timed, and full training
steps (the loop's ``advance``: hooks, LR, forward, backward, optimizer, masks) of the
quickstart's digits-mlp at 80 % magnitude sparsity (one-shot at step 0) run on pre-drawn
batches under each engine, interleaved round by round, medians reported.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time

import torch

from spx.workers.config import TrialConfig
from spx.workers.loop import State, advance, build_state
from spx.workers.tasks import Task, build_task

BASE = {
    "model.width": 128,
    "model.depth": 2,
    "train.batch_size": 64,
    "train.steps": 10,
    "prune.method": "magnitude",
    "prune.sparsity": 0.8,
    "prune.schedule.kind": "one-shot",
    "prune.schedule.start": 0.0,
}
ENGINES: dict[str, dict] = {
    "torch": {},
    "deepspeed zero 0": {"engine": "deepspeed"},
    "deepspeed zero 2": {"engine": "deepspeed", "deepspeed.zero_stage": 2},
}
COLD = """
import os, time
os.environ.setdefault("DS_ACCELERATOR", "cpu")
from deepspeed.accelerator import get_accelerator
started = time.perf_counter()
get_accelerator().create_op_builder("ShareMemCommBuilder").load()
print(time.perf_counter() - started)
"""


def cold_build_s() -> float:
    with tempfile.TemporaryDirectory() as empty:
        env = {**os.environ, "TORCH_EXTENSIONS_DIR": empty}
        out = subprocess.run(
            [sys.executable, "-c", COLD], env=env, capture_output=True, text=True, check=True
        )
    return float(out.stdout.strip().splitlines()[-1])


def _state(flat: dict) -> tuple[State, Task, list]:
    cfg = TrialConfig.from_flat("digits-mlp", {**BASE, **flat})
    task = build_task("digits-mlp")
    state = build_state(cfg, task)
    batches = task.batches(cfg, state.generator)
    return state, task, [next(batches) for _ in range(8)]


def _steps(state: State, task: Task, batches: list, n: int) -> float:
    started = time.perf_counter()
    for i in range(n):
        advance(state, task, batches[i % len(batches)])
    return (time.perf_counter() - started) / n


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--no-cold", action="store_true", help="skip the cold build")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch threads "
        f"{args.threads}"
    )
    if not args.no_cold:
        print(f"first use: JIT build of the shm comm op  {cold_build_s():7.1f} s")
    started = time.perf_counter()
    import deepspeed  # noqa: F401

    print(f"import deepspeed                         {time.perf_counter() - started:7.1f} s")
    runs = {}
    for name, flat in ENGINES.items():
        started = time.perf_counter()
        runs[name] = _state(flat)
        print(f"build_state, {name:<27} {time.perf_counter() - started:7.2f} s")
    for state, task, batches in runs.values():
        _steps(state, task, batches, 5)  # prunes at step 0, warms up
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(args.rounds):
        for name, (state, task, batches) in runs.items():
            times[name].append(_steps(state, task, batches, args.steps))
    base = statistics.median(times["torch"])
    for name, t in times.items():
        med = statistics.median(t)
        print(f"step, {name:<34} {1e3 * med:7.2f} ms  {med / base:5.2f}x torch")
    for state, _, _ in reversed(runs.values()):  # the first DeepSpeed engine owns the group
        state.engine.close()


if __name__ == "__main__":
    main()
