"""SparseLoCo over a real torch.distributed group of local processes (arXiv 2508.15706).

Each rank runs the outer step through TorchComm; the test recomputes the reference math
(EF, per-worker compression, contributor mean, SGD lr 1) in the parent process on the CPU.
The gloo run goes through the torch references, and again through the Triton fast paths
in Triton's CPU interpreter; the NCCL run needs one CUDA device per rank and takes the
compiled fast paths.
"""

from __future__ import annotations

import importlib.util
import os

import pytest
import torch
import torch.multiprocessing as mp
from torch import nn

from spx.kernels.aggregate import scatter_mean
from spx.kernels.compress import SparseLoCoCompressor, decode_entries
from spx.workers.config import CommConfig
from spx.workers.distributed import free_port, init_torch, shutdown_torch
from spx.workers.masks import MaskSet, prunable_weights
from spx.workers.outer import SparseLoCoSync

WORLD = 3
CFG = CommConfig(strategy="sparseloco", topk=8, chunk=8, outer_lr=0.5)


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(16, 24), nn.Linear(24, 5))


def _local(model: nn.Module, rank: int) -> dict[str, torch.Tensor]:
    """θ_r: the shared start moved by a rank-seeded step, as H inner steps would."""
    gen = torch.Generator().manual_seed(100 + rank)
    return {
        n: p.detach() + torch.randn(p.shape, generator=gen) for n, p in model.named_parameters()
    }


def _rank(rank: int, port: int, out: dict, cuda: bool, interpret: bool) -> None:
    if interpret:  # before the first kernel call imports spx.kernels.triton_ops
        os.environ.update(TRITON_INTERPRET="1", SPX_KERNELS="triton")
    if cuda:
        torch.cuda.set_device(rank)
    comm = init_torch(rank, WORLD, "127.0.0.1", port, timeout_s=60, cuda=cuda)
    try:
        model = _model().to("cuda" if cuda else "cpu")
        sync = SparseLoCoSync(comm, CFG, model, total_steps=10)
        with torch.no_grad():
            for name, p in model.named_parameters():
                p.copy_(_local(_model(), rank)[name])
        sync.outer_step(MaskSet(prunable_weights(model)))
        out[rank] = {n: p.detach().cpu().clone() for n, p in model.named_parameters()}
    finally:
        shutdown_torch()


def _reference() -> dict[str, torch.Tensor]:
    comp = SparseLoCoCompressor(topk=CFG.topk, chunk=CFG.chunk, bits=CFG.bits)
    master = {n: p.detach() for n, p in _model().named_parameters()}
    out = {}
    for name, start in master.items():
        idx, val = [], []
        for rank in range(WORLD):
            e = CFG.lr * (start - _local(_model(), rank)[name])  # e starts at 0: β e vanishes
            payload, _ = comp.compress(e)
            flat, values = decode_entries(payload)
            idx.append(flat)
            val.append(values)
        mean = scatter_mean(idx, val, start.numel()).view_as(start)
        out[name] = start - mean
    return out


GLOO = pytest.param(False, False, id="gloo")
GLOO_TRITON = pytest.param(
    False,
    True,
    id="gloo-triton-interpreter",
    marks=pytest.mark.skipif(
        importlib.util.find_spec("triton") is None, reason="Triton is not installed"
    ),
)
NCCL = pytest.param(
    True,
    False,
    id="nccl",
    marks=[
        pytest.mark.gpu,
        pytest.mark.skipif(torch.cuda.device_count() < WORLD, reason=f"needs {WORLD} GPUs"),
    ],
)


@pytest.mark.parametrize(("cuda", "interpret"), [GLOO, GLOO_TRITON, NCCL])
def test_sparseloco_matches_reference_and_ranks_agree(cuda: bool, interpret: bool) -> None:
    with mp.Manager() as manager:
        out = manager.dict()
        mp.spawn(_rank, args=(free_port(), out, cuda, interpret), nprocs=WORLD, join=True)
        results = dict(out)
    expected = _reference()
    for rank in range(WORLD):
        for name, value in expected.items():
            assert torch.equal(results[rank][name], results[0][name])
            assert torch.allclose(results[rank][name], value, atol=1e-6)
