"""Outer-step overhead and wire size of DiLoCo / SparseLoCo on a real model (bytes per sync
as SparseLoCo, arXiv 2508.15706, counts them).

Run by hand, not a test::

    PYTHONPATH=. .venv/bin/python benchmarks/bench_sparseloco.py --width 256 --depth 4 --H 30

For code-gpt at the given size, one worker (a one-thread group: the all-gather is a copy, so
this is the local cost: EF, top-k, quantize, pack, unpack, aggregate, apply) times a round of
H inner AdamW steps and the outer step after it, per strategy. Prints a markdown table: the
outer step as a share of the round, the bytes one worker sends per sync, bits per parameter,
the compression against dense fp32, and the same size by SparseLoCo's formula (14 bits per kept
value plus 20 bytes of table per tensor).
"""

from __future__ import annotations

import argparse
import time

import torch

from spx.kernels.chunking import layout_for
from spx.kernels.topk import k_for_chunk
from spx.workers.config import TrialConfig
from spx.workers.distributed import ThreadComm, ThreadGroup
from spx.workers.loop import advance, build_state
from spx.workers.outer import build_sync
from spx.workers.tasks import build_task


def formula_bytes(model: torch.nn.Module, topk: int, chunk: int) -> float:
    """SparseLoCo's count: 14 bits per kept value plus 5 fp32 per tensor."""
    total = 0.0
    for p in model.parameters():
        layout = layout_for(tuple(p.shape), chunk)
        kept = layout.n_chunks * k_for_chunk(layout.chunk_len, topk, chunk)
        total += kept * 14 / 8 + 20
    return total


def run(args: argparse.Namespace, strategy: str, topk: int) -> str:
    flat = {
        "model.width": args.width,
        "model.depth": args.depth,
        "train.batch_size": args.batch,
        "comm.strategy": strategy,
        "comm.topk": topk,
        "comm.inner_steps": args.H,
    }
    cfg = TrialConfig.from_flat("code-gpt", flat)
    task = build_task("code-gpt")
    state = build_state(cfg, task)
    sync = build_sync(ThreadComm(ThreadGroup(1), 0), cfg.comm, state.model, 10**9)
    batches = task.batches(cfg, state.generator)
    inner = outer = 0.0
    for _ in range(args.rounds):
        t0 = time.perf_counter()
        for _ in range(args.H):
            advance(state, task, next(batches))
        t1 = time.perf_counter()
        sync.outer_step(state.pruner.masks)
        inner, outer = inner + t1 - t0, outer + time.perf_counter() - t1
    m = sync.metrics()
    share = outer / (inner + outer)
    formula = formula_bytes(state.model, topk, cfg.comm.chunk) if strategy == "sparseloco" else 0
    per_sync = m["comm/sync_bytes"]
    return (
        f"| {strategy} | {topk if strategy == 'sparseloco' else '-'} | {sync.numel:,} "
        f"| {1000 * inner / args.rounds:.0f} | {1000 * outer / args.rounds:.1f} | {share:.1%} "
        f"| {per_sync:,.0f} | {formula:,.0f} | {m['comm/sync_bits_per_param']:.3f} "
        f"| {4 * sync.numel / per_sync:.1f}x |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--width", type=int, default=256)
    parser.add_argument("--depth", type=int, default=4)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--H", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"code-gpt width {args.width} depth {args.depth}, H = {args.H}, {args.rounds} rounds")
    print(
        "| strategy | topk | params | H inner steps ms | outer step ms | outer share "
        "| bytes/sync | formula | bits/param | vs fp32 |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for strategy, topk in (("diloco", 64), ("sparseloco", 64), ("sparseloco", 128)):
        print(run(args, strategy, topk))


if __name__ == "__main__":
    main()
