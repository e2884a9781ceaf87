"""Outer steps of DDP / DiLoCo / SparseLoCo on literal tensors (DiLoCo, arXiv 2311.08105;
SparseLoCo, arXiv 2508.15706).

R workers are threads of this process talking through ThreadComm: no Ray, no sockets.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest
import torch
from torch import nn

from spx.errors import TrialPruned
from spx.kernels.compress import SparseLoCoCompressor
from spx.workers.config import CommConfig, TrialConfig
from spx.workers.distributed import ThreadComm, ThreadGroup
from spx.workers.loop import ListReporter, train
from spx.workers.masks import MaskSet, prunable_weights
from spx.workers.outer import DDPSync, DiLoCoSync, SparseLoCoSync, frame, unframe
from spx.workers.tasks import build_task


def run_group(world: int, fn: Callable[[ThreadComm], Any]) -> list[Any]:
    """Run ``fn(comm)`` on ``world`` threads; re-raise the first failure."""
    group = ThreadGroup(world, timeout_s=120)
    out: list[Any] = [None] * world
    errors: list[BaseException] = []

    def work(rank: int) -> None:
        try:
            out[rank] = fn(ThreadComm(group, rank))
        except BaseException as exc:  # noqa: BLE001 - handed to the test thread
            errors.append(exc)
            group.barrier.abort()

    threads = [threading.Thread(target=work, args=(r,)) for r in range(world)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return out


def linear(weight: list[list[float]]) -> nn.Linear:
    layer = nn.Linear(2, 2, bias=False)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor(weight))
    return layer


MASTER = [[10.0, 10.0], [10.0, 10.0]]
# Each worker's θ_r: Δ_0 = [[4, 0], [0, 1]], Δ_1 = [[0, 0.5], [0, -3]] (θ_old − θ_new).
LOCAL = [[[6.0, 10.0], [10.0, 9.0]], [[10.0, 9.5], [10.0, 13.0]]]


def sparse_step(comm: ThreadComm, agg: str = "mean_contrib", prune: bool = False) -> dict:
    cfg = CommConfig(strategy="sparseloco", topk=1, chunk=2, sparse_agg=agg)
    model = linear(MASTER)
    masks = MaskSet(prunable_weights(model))
    if prune:
        masks.masks["weight"] = torch.tensor([[True, True], [True, False]])
    sync = SparseLoCoSync(comm, cfg, model, total_steps=10)
    model.weight.data.copy_(torch.tensor(LOCAL[comm.rank]))
    sync.outer_step(masks)
    first = (model.weight.tolist(), sync.ef["weight"].tolist(), sync.metrics())
    sync.outer_step(masks)  # Δ = 0 now: only the decayed residual is left to send
    return {"first": first, "second": model.weight.tolist()}


def test_sparseloco_contributor_mean_and_residual() -> None:
    out = run_group(2, sparse_step)
    # One value per 2x2 chunk survives top-k; a lone value is quantized exactly.
    # Worker 0 sends 4 at (0, 0), worker 1 sends -3 at (1, 1): each coordinate is the mean
    # over the workers that chose it.
    assert out[0]["first"][0] == [[6.0, 10.0], [10.0, 13.0]]
    assert out[1]["first"][0] == out[0]["first"][0]
    # The EF keeps what was not sent.
    assert out[0]["first"][1] == [[0.0, 0.0], [0.0, 1.0]]
    assert out[1]["first"][1] == [[0.0, 0.5], [0.0, 0.0]]
    # Next step, e = 0.95 e: worker 0 sends 0.95 at (1, 1), worker 1 sends 0.475 at (0, 1).
    second = torch.tensor(out[0]["second"])
    assert torch.allclose(second, torch.tensor([[6.0, 9.525], [10.0, 12.05]]))
    assert out[0]["second"] == out[1]["second"]


def test_sparseloco_mean_all_divides_by_world() -> None:
    out = run_group(2, lambda c: sparse_step(c, "mean_all"))
    assert out[0]["first"][0] == [[8.0, 10.0], [10.0, 11.5]]


def test_pruned_coordinate_never_sent_nor_revived() -> None:
    out = run_group(2, lambda c: sparse_step(c, prune=True))
    # (1, 1) is pruned: worker 1 sends its next largest, 0.5 at (0, 1), and (1, 1) stays 0.
    assert out[0]["first"][0] == [[6.0, 9.5], [10.0, 0.0]]
    assert out[0]["first"][1] == [[0.0, 0.0], [0.0, 0.0]]
    assert out[0]["second"][1][1] == 0.0


def test_sparseloco_accounting_is_the_packed_size() -> None:
    metrics = run_group(2, sparse_step)[0]["first"][2]
    # One 12-bit index (padded to a pair: 3 bytes) + one 2-bit code (1 byte) + 5 fp32.
    assert metrics["comm/bytes_sent"] == 3 + 1 + 20
    assert metrics["comm/bytes_dense"] == 16
    assert metrics["comm/bytes_received"] == 24
    assert metrics["comm/syncs"] == 1


def test_diloco_nesterov_outer_step() -> None:
    def step(comm: ThreadComm) -> list[list[float]]:
        cfg = CommConfig(strategy="diloco")
        model = linear(MASTER)
        sync = DiLoCoSync(comm, cfg, model, total_steps=10)
        model.weight.data.copy_(torch.tensor(LOCAL[comm.rank]))
        sync.outer_step(MaskSet(prunable_weights(model)))
        return model.weight.tolist()

    out = run_group(2, step)
    mean = torch.tensor([[2.0, 0.25], [0.0, -1.0]])  # (Δ_0 + Δ_1) / 2
    expected = torch.tensor(MASTER) - 0.7 * (mean + 0.9 * mean)  # v = Δ on the first step
    assert torch.allclose(torch.tensor(out[0]), expected)
    assert out[0] == out[1]


def test_ddp_averages_gradients() -> None:
    def step(comm: ThreadComm) -> list[list[float]]:
        model = linear(MASTER)
        model.weight.grad = torch.full((2, 2), float(comm.rank + 1))
        DDPSync(comm, CommConfig(), model, total_steps=10).after_backward()
        return model.weight.grad.tolist()

    assert run_group(3, step)[0] == [[2.0, 2.0], [2.0, 2.0]]


def test_frame_round_trip() -> None:
    c = SparseLoCoCompressor(topk=2, chunk=4)
    payloads = [c.compress(torch.randn(8, 8))[0], c.compress(torch.randn(5))[0]]
    assert unframe(frame(payloads)) == payloads


def _cfg(strategy: str, **extra: Any) -> TrialConfig:
    flat = {
        "train.steps": 20,
        "train.report_every": 10,
        "model.width": 32,
        "comm.strategy": strategy,
        "comm.inner_steps": 4,
        **extra,
    }
    return TrialConfig.from_flat("digits-mlp", flat)


@pytest.mark.parametrize("strategy", ["ddp", "diloco", "sparseloco"])
def test_workers_end_identical(strategy: str) -> None:
    cfg = _cfg(strategy, **{"prune.method": "magnitude", "prune.sparsity": 0.5})
    task = build_task("digits-mlp")
    finals = run_group(2, lambda comm: train(cfg, task, ListReporter(), comm=comm))
    assert finals[0]["val/loss"] == finals[1]["val/loss"]
    assert finals[0]["model/sparsity"] == pytest.approx(0.5, abs=0.01)
    if strategy == "sparseloco":
        assert finals[0]["comm/compression"] > 20


class StopAt(ListReporter):
    def __init__(self, step: int) -> None:
        super().__init__()
        self.stop = step

    def report(self, step: int, metrics: dict[str, float]) -> bool:  # type: ignore[override]
        super().report(step, metrics)
        return step < self.stop


def test_resumed_group_continues_bit_identically(tmp_path) -> None:
    cfg = _cfg("sparseloco", **{"comm.inner_steps": 3})
    task = build_task("digits-mlp")
    whole = run_group(2, lambda comm: train(cfg, task, ListReporter(), comm=comm))

    def stopped(comm: ThreadComm) -> None:
        with pytest.raises(TrialPruned):
            train(cfg, task, StopAt(10), tmp_path / f"rank{comm.rank}", comm=comm)

    run_group(2, stopped)
    resumed = run_group(
        2, lambda comm: train(cfg, task, ListReporter(), tmp_path / f"rank{comm.rank}", comm=comm)
    )
    assert resumed[0]["val/loss"] == whole[0]["val/loss"]
    assert resumed[0]["comm/bytes_sent"] == whole[0]["comm/bytes_sent"]
