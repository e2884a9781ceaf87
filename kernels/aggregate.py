"""Combine the sparse payloads all-gathered from R workers (SparseLoCo, Sarfi et al. 2025,
arXiv 2508.15706).

Two rules, chosen by :class:`SparseAgg`:

- ``mean_contrib`` (the reference code, default): each coordinate is the mean over only the
  workers that selected it (``scatter_reduce(reduce="mean", include_self=False)`` on a zero
  tensor); coordinates nobody selected stay 0.
- ``mean_all``: the sum over workers divided by R, what a dense all-reduce of the
  densified payloads would give. It differs per coordinate by ``count / R``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from enum import StrEnum

import torch
from torch import Tensor

from spx.kernels import fastpath
from spx.kernels.compress import decode_entries
from spx.kernels.wire import WirePayload


class SparseAgg(StrEnum):
    """The ``comm.sparse_agg`` choice; ``parse`` turns a config string into a member."""

    MEAN_CONTRIB = "mean_contrib"
    MEAN_ALL = "mean_all"

    @classmethod
    def parse(cls, mode: SparseAgg | str) -> SparseAgg:
        try:
            return cls(mode)
        except ValueError:
            valid = [m.value for m in cls]
            raise ValueError(f"sparse aggregation must be one of {valid}, got {mode!r}") from None


def scatter_mean(
    indices: Sequence[Tensor],
    values: Sequence[Tensor],
    numel: int,
    mode: SparseAgg | str = SparseAgg.MEAN_CONTRIB,
) -> Tensor:
    """Flat fp32 tensor of ``numel`` combining each worker's ``(indices[r], values[r])``.

    >>> idx = [torch.tensor([0, 1]), torch.tensor([1, 2])]
    >>> val = [torch.tensor([2.0, 4.0]), torch.tensor([6.0, 8.0])]
    >>> scatter_mean(idx, val, 4).tolist()
    [2.0, 5.0, 8.0, 0.0]
    >>> scatter_mean(idx, val, 4, "mean_all").tolist()
    [1.0, 5.0, 4.0, 0.0]
    """
    mode = SparseAgg.parse(mode)
    idx = torch.cat([i.reshape(-1) for i in indices])
    val = torch.cat([v.reshape(-1).float() for v in values])
    out = val.new_zeros(numel)
    if mode is SparseAgg.MEAN_ALL:
        return out.index_add_(0, idx, val).div_(len(indices))
    return out.scatter_reduce_(0, idx, val, reduce="mean", include_self=False)


def aggregate(
    payloads: Sequence[WirePayload], mode: SparseAgg | str = SparseAgg.MEAN_CONTRIB
) -> Tensor:
    """Dense fp32 update ``Δ̄`` of one tensor from the payloads of all R workers (the
    contributors' mean of SparseLoCo).

    Every payload must describe the same tensor (same shape and chunk side).
    """
    if not payloads:
        raise ValueError("aggregate needs at least one payload")
    keys = {(p.shape, p.chunk) for p in payloads}
    if len(keys) != 1:
        raise ValueError(f"payloads describe different tensors, got {sorted(keys)}")
    shape = payloads[0].shape
    if fastpath.enabled(*(p.indices for p in payloads)):
        return _aggregate_fused(payloads, SparseAgg.parse(mode)).view(shape)
    decoded = [decode_entries(p) for p in payloads]
    flat = scatter_mean([d[0] for d in decoded], [d[1] for d in decoded], math.prod(shape), mode)
    return flat.view(shape)


def _aggregate_fused(payloads: Sequence[WirePayload], mode: SparseAgg) -> Tensor:
    """The GPU path of :func:`aggregate`: every payload decoded and added in place."""
    numel = math.prod(payloads[0].shape)
    device = payloads[0].indices.device
    sums = torch.zeros(numel, device=device)
    counts = torch.zeros(numel, device=device)
    for p in payloads:
        fastpath.ops().decode(p, sums, counts)
    if mode is SparseAgg.MEAN_ALL:
        return sums.div_(len(payloads))
    return torch.where(counts > 0, sums / counts.clamp(min=1.0), sums)
