"""The SparseLoCo / DiLoCo outer step on GPU tensors, over real process groups.

    python3 benchmarks/gpu/bench_outer.py [--dry-run] [--ranks 1,4]

Each rank is a process that builds a code-gpt trial state with the loop's own
``build_state`` (on a machine with CUDA the model lives on the GPU), joins a
``torch.distributed`` group through ``init_torch`` (the same call a multi-worker trial
makes), runs H inner AdamW steps and then times the outer step: error feedback, chunked
top-k, quantisation, packing, the all-gather, decoding, the contributors' mean and the
outer update. One rank uses NCCL (NCCL refuses two ranks on one device); several ranks
share the one GPU over gloo, so their collectives go through host memory. Prints a
markdown table: ms per outer step (median over rounds, rank 0) and bytes each rank sent.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import torch
import torch.multiprocessing as mp

SIZE = {"model.width": 512, "model.depth": 6, "model.heads": 8, "model.context": 128}
DRY_SIZE = {"model.width": 32, "model.depth": 1, "model.heads": 2, "model.context": 16}


def sync_device() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def rank_main(rank: int, world: int, port: int, args: dict, out: str) -> None:
    from spx.workers.config import TrialConfig
    from spx.workers.distributed import init_torch, shutdown_torch
    from spx.workers.loop import advance, build_state
    from spx.workers.outer import build_sync
    from spx.workers.tasks import build_task

    torch.set_num_threads(1)
    nccl = args["nccl"] and world == 1
    comm = init_torch(rank, world, "127.0.0.1", port, 120.0, cuda=nccl)
    flat = {
        **args["size"],
        "train.batch_size": args["batch"],
        "comm.strategy": args["strategy"],
        "comm.inner_steps": args["H"],
        "comm.topk": 64,
    }
    cfg = TrialConfig.from_flat("code-gpt", flat)
    task = build_task("code-gpt")
    state = build_state(cfg, task, rank=rank, workers=world)
    sync = build_sync(comm, cfg.comm, state.model, 10**9)
    batches = task.batches(cfg, state.generator)
    outer: list[float] = []
    for _ in range(args["rounds"] + 1):  # the first round warms up (Triton compiles)
        for _ in range(args["H"]):
            advance(state, task, next(batches))
        sync_device()
        t0 = time.perf_counter()
        sync.outer_step(state.pruner.masks)
        sync_device()
        outer.append(time.perf_counter() - t0)
    if rank == 0:
        metrics = sync.metrics()
        result = {
            "device": str(state.device),
            "backend": "nccl" if nccl else "gloo",
            "params": sum(p.numel() for p in state.model.parameters()),
            "outer_ms": 1000 * statistics.median(outer[1:]),
            "sync_bytes": metrics.get("comm/sync_bytes", 0.0),
        }
        Path(out).write_text(json.dumps(result))
    torch.distributed.barrier()  # no rank leaves the group while another still uses it
    shutdown_torch()


def measure(world: int, strategy: str, args: argparse.Namespace, size: dict) -> dict:
    from spx.workers.distributed import free_port

    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "rank0.json")
        spec = {
            "size": size,
            "batch": 4 if args.dry_run else 16,
            "strategy": strategy,
            "H": 2 if args.dry_run else args.H,
            "rounds": 1 if args.dry_run else args.rounds,
            "nccl": torch.cuda.is_available(),
        }
        mp.spawn(rank_main, args=(world, free_port(), spec, out), nprocs=world, join=True)
        return json.loads(Path(out).read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dry-run", action="store_true", help="a tiny model, one round")
    parser.add_argument("--ranks", default="1,4", help="group sizes, comma-separated")
    parser.add_argument("--H", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    size = DRY_SIZE if args.dry_run else SIZE
    where = torch.cuda.get_device_name() if torch.cuda.is_available() else "CPU"
    print(f"outer step of code-gpt {size['model.width']}x{size['model.depth']} on {where}")
    print("| strategy | ranks | backend | trial device | params | outer step ms | bytes/sync |")
    print("|---|---|---|---|---|---|---|")
    for world in (int(w) for w in args.ranks.split(",")):
        for strategy in ("diloco", "sparseloco"):
            r = measure(world, strategy, args, size)
            print(
                f"| {strategy} | {world} | {r['backend']} | {r['device']} | {r['params']:,} "
                f"| {r['outer_ms']:.2f} | {r['sync_bytes']:,.0f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
