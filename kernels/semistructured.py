"""2:4 semi-structured sparse weights for sparse tensor cores (Mishra et al. 2021, arXiv
2104.08378), GPU only.

``torch.sparse.to_sparse_semi_structured`` needs CUDA with compute capability >= 8.0
(Ampere or newer), a contiguous 2-D fp16/bf16 tensor whose sides are multiples of the
backend's minimum block, and it silently trusts the 2:4 pattern; :func:`to_semi_structured`
checks the pattern first. Call :func:`semi_structured_available` before anything else;
on a CPU-only machine nothing here runs.

Example (on a GPU)::

    w = torch.randn(128, 128, dtype=torch.float16, device="cuda")
    w = w * nm_mask(w, 2, 4)
    sparse_w = to_semi_structured(w)
    y = torch.nn.functional.linear(x, sparse_w)
"""

from __future__ import annotations

import torch
from torch import Tensor


def semi_structured_available() -> bool:
    """True when CUDA is present and its device has compute capability >= 8.0."""
    return torch.cuda.is_available() and torch.cuda.get_device_capability() >= (8, 0)


def is_2to4(weight: Tensor) -> bool:
    """Whether every group of 4 consecutive entries along the last dim has <= 2 nonzeros.

    >>> is_2to4(torch.tensor([[1.0, 0.0, 2.0, 0.0]])), is_2to4(torch.tensor([[1.0, 1.0, 1.0, 0.0]]))
    (True, False)
    """
    if weight.shape[-1] % 4:
        return False
    nonzero = (weight != 0).reshape(-1, 4).sum(dim=1)
    return bool((nonzero <= 2).all())


def to_semi_structured(weight: Tensor) -> Tensor:
    """Compress a 2:4-masked 2-D fp16/bf16 CUDA weight into a semi-structured sparse tensor."""
    if not semi_structured_available():
        raise ValueError("semi-structured sparsity needs CUDA with compute capability >= 8.0")
    if weight.dim() != 2 or weight.dtype not in (torch.float16, torch.bfloat16):
        raise ValueError(
            f"need a 2-D fp16/bf16 weight, got shape={tuple(weight.shape)} dtype={weight.dtype}"
        )
    if not is_2to4(weight):
        raise ValueError("weight is not 2:4 sparse along its input dim; apply nm_mask(w, 2, 4)")
    return torch.sparse.to_sparse_semi_structured(weight.contiguous())
