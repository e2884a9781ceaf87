"""``data/tokens`` and ``compute/train_flops`` of a multi-worker trial count every worker.

Two worker processes train one DDP trial over a real gloo group on the CPU; each trains on
its own batch of ``train.batch_size`` every step, so the trial saw twice the tokens (and
spent twice the compute) of one worker alone for the same steps and batch size.
"""

from __future__ import annotations

import pytest
import torch
import torch.multiprocessing as mp

from spx.workers.config import TrialConfig
from spx.workers.distributed import free_port, init_torch, shutdown_torch
from spx.workers.loop import ListReporter, train
from spx.workers.tasks import build_task

STEPS, BATCH, WORKERS = 6, 8, 2
FLAT = {"train.steps": STEPS, "train.batch_size": BATCH, "train.report_every": 3}
WIDTH = 32  # digits-mlp at depth 2 (the default): 64 -> 32 -> 32 -> 10
MACS = 64 * WIDTH + WIDTH * WIDTH + WIDTH * 10  # forward multiply-adds per image


def _cfg(**flat) -> TrialConfig:
    return TrialConfig.from_flat("digits-mlp", {**FLAT, "model.width": WIDTH, **flat})


def _rank(rank: int, port: int, out: dict) -> None:
    torch.set_num_threads(1)
    comm = init_torch(rank, WORKERS, "127.0.0.1", port, timeout_s=120)
    try:
        reporter = ListReporter()
        final = train(
            _cfg(**{"comm.strategy": "ddp"}), build_task("digits-mlp"), reporter, comm=comm
        )
        out[rank] = (final, reporter.rows)
    finally:
        shutdown_torch()


def test_a_two_worker_trial_counts_both_workers_tokens():
    alone_rows = ListReporter()
    alone = train(_cfg(), build_task("digits-mlp"), alone_rows)
    assert alone["data/tokens"] == STEPS * BATCH
    with mp.Manager() as manager:
        out = manager.dict()
        mp.spawn(_rank, args=(free_port(), out), nprocs=WORKERS, join=True)
        final, rows = out[0]
    assert final["data/tokens"] == WORKERS * alone["data/tokens"] == WORKERS * STEPS * BATCH
    assert [m["data/tokens"] for _, m in rows] == [WORKERS * BATCH * s for s, _ in rows]
    # dense: 2 FLOPs per multiply-add, backward twice the forward, per token (image) trained
    assert final["compute/train_flops"] == 3 * 2 * MACS * WORKERS * STEPS * BATCH
    assert final["compute/train_flops"] == pytest.approx(WORKERS * alone["compute/train_flops"])
