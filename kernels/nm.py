"""N:M masks: keep the N largest |w| of every M consecutive weights (Zhou et al., ICLR 2021,
"Learning N:M Fine-grained Structured Sparse Neural Networks From Scratch").

Groups run along the input-channel dimension, the layout sparse tensor cores accept:

- Linear ``[out, in]``: row-major groups of M along ``in``.
- Conv ``[out, in, *kernel]``: permuted to ``(out, *kernel, in)`` (the reference's
  ``Sparse_NHWC``) before grouping, and the mask permuted back, so groups lie along C_in.
- A 1-D tensor is grouped along its only dimension.

Exactly N entries survive per group, also when magnitudes tie (``torch.topk`` breaks ties),
so the pattern stays hardware-valid. The mask is cheap and meant to be recomputed from the
dense weights every forward pass (SR-STE, Zhou et al. 2021).
"""

from __future__ import annotations

import re

import torch
from torch import Tensor

_NM = re.compile(r"^\s*(\d+)\s*:\s*(\d+)\s*$")


def parse_nm(spec: str) -> tuple[int, int]:
    """``"2:4" -> (2, 4)``; raises ValueError unless ``1 <= n <= m``.

    >>> parse_nm("2:4"), parse_nm(" 1 : 8 ")
    ((2, 4), (1, 8))
    """
    match = _NM.match(spec) if isinstance(spec, str) else None
    if match is None:
        raise ValueError(f"N:M sparsity must look like '2:4', got {spec!r}")
    n, m = int(match.group(1)), int(match.group(2))
    _check_nm(n, m)
    return n, m


def _check_nm(n: int, m: int) -> None:
    if not 1 <= n <= m:
        raise ValueError(f"N:M needs 1 <= N <= M, got {n}:{m}")


def _channels_last(weight: Tensor) -> Tensor:
    return weight.movedim(1, -1) if weight.dim() >= 3 else weight


def _channels_first(grouped: Tensor, ndim: int) -> Tensor:
    return grouped.movedim(-1, 1) if ndim >= 3 else grouped


def nm_mask(weight: Tensor, n: int, m: int) -> Tensor:
    """Bool mask of ``weight``'s shape keeping the ``n`` largest ``|w|`` per group of ``m``.

    >>> w = torch.tensor([[1.0, -4.0, 3.0, 2.0], [0.5, 0.1, -0.2, 0.9]])
    >>> nm_mask(w, 2, 4).int().tolist()
    [[0, 1, 1, 0], [1, 0, 0, 1]]
    """
    _check_nm(n, m)
    if weight.dim() == 0:
        raise ValueError("N:M needs a tensor with at least one dimension")
    grouped = _channels_last(weight.detach())
    if grouped.shape[-1] % m:
        raise ValueError(
            f"input dimension {grouped.shape[-1]} of weight {tuple(weight.shape)} "
            f"is not divisible by M={m}"
        )
    groups = grouped.reshape(-1, m)
    keep = torch.topk(groups.abs(), n, dim=1).indices
    mask = torch.zeros_like(groups, dtype=torch.bool).scatter_(1, keep, True)
    return _channels_first(mask.view(grouped.shape), weight.dim()).contiguous()
