"""Error-feedback accumulator updates of SparseLoCo (SparseLoCo, Sarfi et al. 2025, arXiv
2508.15706).

The outer step per worker is ``e <- beta*e + alpha*delta``, compress ``e``, then
``e <- e - transmitted`` where ``transmitted`` is the *dequantized* scatter the compressor
returns, so the accumulator keeps both the sparsification and the quantization residual.
Both functions work in place and return ``e`` for chaining.
"""

from __future__ import annotations

from torch import Tensor

from spx.kernels import fastpath


def ef_update(e: Tensor, delta: Tensor, beta: float, alpha: float) -> Tensor:
    """``e <- beta * e + alpha * delta`` in place; alpha is SparseLoCo's outer lr.

    >>> import torch
    >>> ef_update(torch.tensor([1.0, 2.0]), torch.tensor([10.0, 0.0]), 0.5, 1.0).tolist()
    [10.5, 1.0]
    """
    if fastpath.enabled(e, delta) and e.is_contiguous():
        return fastpath.ops().ef_update(e, delta, beta, alpha)
    return e.mul_(beta).add_(delta, alpha=alpha)


def ef_subtract(e: Tensor, transmitted: Tensor) -> Tensor:
    """``e <- e - transmitted`` in place, ``transmitted`` being the dequantized dense send.

    >>> import torch
    >>> ef_subtract(torch.tensor([10.5, 1.0]), torch.tensor([10.0, 0.0])).tolist()
    [0.5, 1.0]
    """
    return e.sub_(transmitted.to(e.dtype))
