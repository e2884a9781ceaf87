"""The masked training step of code-gpt on the GPU: ms per step at 0 / 50 / 90 % and 2:4.

    python3 benchmarks/gpu/bench_train_step.py [--dry-run] [--rounds 5] [--steps 20]

Each configuration is one trial state built by the loop itself (``build_state``: on a
machine with CUDA the trial trains there), pruned one-shot at step 0, then timed over full
training steps (``advance``: pruner hooks, LR, forward, backward, AdamW, masks) on
pre-drawn batches. Configurations are interleaved round by round and each reports the
median; the GPU is synchronised at the end of every timed run. Masked steps are dense
arithmetic on masked weights, so the goal is to cost no more than dense (the 2:4 row uses
SR-STE, which adds its decay term).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from spx.workers.config import TrialConfig
from spx.workers.loop import advance, build_state
from spx.workers.tasks import build_task

SIZE = {
    "model.width": 512,
    "model.depth": 6,
    "model.heads": 8,
    "model.context": 256,
    "train.batch_size": 32,
}
DRY_SIZE = {
    "model.width": 32,
    "model.depth": 1,
    "model.heads": 2,
    "model.context": 16,
    "train.batch_size": 4,
}
ONE_SHOT = {"prune.schedule.kind": "one-shot", "prune.schedule.start": 0.0}
CONFIGS = {
    "dense": {"prune.method": "none"},
    "magnitude 50%": {"prune.method": "magnitude", "prune.sparsity": 0.5, **ONE_SHOT},
    "magnitude 90%": {"prune.method": "magnitude", "prune.sparsity": 0.9, **ONE_SHOT},
    "nm 2:4": {"prune.method": "nm", "prune.nm": "2:4"},
}


def sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def build(size: dict, flat: dict):
    cfg = TrialConfig.from_flat("code-gpt", {**size, "train.steps": 10_000, **flat})
    task = build_task("code-gpt")
    state = build_state(cfg, task)
    batches = task.batches(cfg, state.generator)
    return state, task, [next(batches) for _ in range(8)]


def run_steps(state, task, batches, n: int) -> float:
    sync()
    started = time.perf_counter()
    for i in range(n):
        advance(state, task, batches[i % len(batches)])
    sync()
    return (time.perf_counter() - started) / n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dry-run", action="store_true", help="a tiny model, 2 rounds")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=20)
    args = parser.parse_args()
    size = DRY_SIZE if args.dry_run else SIZE
    rounds, steps = (2, 3) if args.dry_run else (args.rounds, args.steps)
    runs = {name: build(size, flat) for name, flat in CONFIGS.items()}
    device = next(iter(runs.values()))[0].device
    for state, task, batches in runs.values():
        run_steps(state, task, batches, 3)  # prunes at step 0; allocator and kernels warm
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(rounds):
        for name, (state, task, batches) in runs.items():
            times[name].append(run_steps(state, task, batches, steps))
    where = torch.cuda.get_device_name() if device.type == "cuda" else "CPU"
    params = sum(p.numel() for p in runs["dense"][0].model.parameters())
    print(
        f"code-gpt {size['model.width']}x{size['model.depth']}, context "
        f"{size['model.context']}, batch {size['train.batch_size']} ({params:,} params), "
        f"trial device {device} ({where}); median of {rounds} rounds x {steps} steps"
    )
    print("| config | sparsity | ms/step | vs dense |")
    print("|---|---|---|---|")
    dense = statistics.median(times["dense"])
    for name, (state, _, _) in runs.items():
        ms = statistics.median(times[name])
        sparsity = state.pruner.masks.sparsity() if name != "dense" else 0.0
        print(f"| {name} | {sparsity:.3f} | {1000 * ms:.2f} | {ms / dense:.2f}x |")


if __name__ == "__main__":
    main()
