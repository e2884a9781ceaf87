"""Masked training step vs dense, and mask-update time vs a training step, per workload.

    .venv/bin/python benchmarks/bench_masked_step.py [--threads 1] [--rounds 15] [--steps 20]

Steady state: each method's model is pruned at step 0 (one-shot), then full training steps
(the loop's ``advance``: hooks, LR, forward, backward, optimizer, masks) are timed on
pre-drawn batches. Configurations are interleaved round by round and each reports the
median over rounds, so load drift on a shared machine hits all of them alike. Targets
(issue 3): a masked step at 90 % sparsity ≤ 1.10x dense; a mask update ≤ 1 step.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from collections.abc import Callable

import torch

from spx.workers.config import TrialConfig
from spx.workers.loop import State, advance, build_state
from spx.workers.tasks import Task, build_task

WORKLOADS = {
    "digits-mlp": {"model.width": 128, "model.depth": 2, "train.batch_size": 64},
    "digits-cnn": {"model.width": 32, "model.depth": 2, "train.batch_size": 64},
    "code-gpt": {
        "model.width": 128,
        "model.depth": 2,
        "model.heads": 4,
        "model.context": 64,
        "train.batch_size": 16,
    },
}
ONE_SHOT = {"prune.schedule.kind": "one-shot", "prune.schedule.start": 0.0}
STEADY = {
    "dense": {"prune.method": "none"},
    "magnitude 90%": {"prune.method": "magnitude", "prune.sparsity": 0.9, **ONE_SHOT},
    "rigl 90%": {"prune.method": "rigl", "prune.sparsity": 0.9, "prune.update_end": 0.0},
    "channel 90%": {"prune.method": "channel", "prune.sparsity": 0.9, **ONE_SHOT},
    "nm 2:4": {"prune.method": "nm"},
}
UPDATES = {
    "magnitude": {"prune.method": "magnitude", "prune.sparsity": 0.9},
    "global-magnitude": {"prune.method": "global-magnitude", "prune.sparsity": 0.9},
    "channel": {"prune.method": "channel", "prune.sparsity": 0.9},
    "rigl": {"prune.method": "rigl", "prune.sparsity": 0.9},
    "lottery": {"prune.method": "lottery", "prune.rounds": 1, "prune.rewind_step": 1},
}


def _state(workload: str, flat: dict) -> tuple[State, Task, list]:
    cfg = TrialConfig.from_flat(workload, {**WORKLOADS[workload], "train.steps": 10, **flat})
    task = build_task(workload)
    state = build_state(cfg, task)
    batches = task.batches(cfg, state.generator)
    return state, task, [next(batches) for _ in range(8)]


def _steps(state: State, task: Task, batches: list, n: int) -> float:
    started = time.perf_counter()
    for i in range(n):
        advance(state, task, batches[i % len(batches)])
    return (time.perf_counter() - started) / n


def steady_steps(workload: str, rounds: int, steps: int) -> dict[str, float]:
    """Median seconds per training step of each STEADY config, interleaved."""
    runs = {name: _state(workload, flat) for name, flat in STEADY.items()}
    for state, task, batches in runs.values():
        _steps(state, task, batches, 5)  # prunes at step 0, warms up the allocator
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(rounds):
        for name, (state, task, batches) in runs.items():
            times[name].append(_steps(state, task, batches, steps))
    return {name: statistics.median(t) for name, t in times.items()}


def _timed(fn: Callable[[], object], rounds: int) -> float:
    samples = []
    for _ in range(rounds):
        started = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - started)
    return statistics.median(samples)


def update_times(workload: str, rounds: int) -> dict[str, float]:
    """Median seconds of one mask update of each UPDATES method (after a backward pass)."""
    out = {}
    for name, flat in UPDATES.items():
        state, task, batches = _state(workload, flat)
        _steps(state, task, batches, 2)  # optimizer state exists; lottery has theta_k
        state.model.train()
        task.loss(state.model, batches[0]).backward()  # a dense gradient for RigL
        pruner, opt = state.pruner, state.optimizer
        if name == "rigl":
            out[name] = _timed(lambda p=pruner, o=opt: p.regrow(0.3, o), rounds)
        elif name == "lottery":
            at = pruner.rounds.length
            out[name] = _timed(lambda p=pruner, o=opt, t=at: p.before_step(t, o), rounds)
        else:
            out[name] = _timed(lambda p=pruner, o=opt: _prune_now(p, o), rounds)
    return out


def _prune_now(pruner, optimizer) -> None:
    """What a pruning step does in before_step: score, select, apply, clear state."""
    from spx.workers.pruner import mask_optimizer_state

    pruner.prune_to(0.9)
    pruner.masks.apply()
    mask_optimizer_state(optimizer, pruner.weights, pruner.masks.multipliers())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--steps", type=int, default=20)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    print(
        f"# {platform.node()}: {platform.processor() or platform.machine()}, "
        f"torch {torch.__version__}, {args.threads} thread(s), CUDA: {torch.cuda.is_available()}"
    )
    print("\n| workload | " + " | ".join(f"{n} ms/step" for n in STEADY) + " |")
    print("|---" * (len(STEADY) + 1) + "|")
    dense = {}
    for workload in WORKLOADS:
        t = steady_steps(workload, args.rounds, args.steps)
        dense[workload] = t["dense"]
        cells = [f"{t['dense'] * 1e3:.2f}"]
        cells += [f"{t[n] * 1e3:.2f} ({t[n] / t['dense']:.2f}x)" for n in STEADY if n != "dense"]
        print(f"| {workload} | " + " | ".join(cells) + " |")
    print("\n| workload | dense step ms | " + " | ".join(f"{n} update ms" for n in UPDATES) + " |")
    print("|---" * (len(UPDATES) + 2) + "|")
    for workload in WORKLOADS:
        u = update_times(workload, args.rounds)
        step = dense[workload]
        cells = [f"{u[n] * 1e3:.2f} ({u[n] / step:.2f} steps)" for n in UPDATES]
        print(f"| {workload} | {step * 1e3:.2f} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
