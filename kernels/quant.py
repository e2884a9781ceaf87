"""Statistical quantizer of SparseLoCo's selected values (SparseLoCo, Sarfi et al. 2025,
arXiv 2508.15706: its 2-bit quantizer).

One call quantizes all selected values of one tensor (statistics from the selected values
only)::

    mu = mean(v);  c = v - mu;  sigma = ||c|| / sqrt(n - 1)
    B = 2**bits;   s = R * sigma / B   (s := 1 if it is 0, NaN or inf)
    q = clamp(round(c / s + B // 2), 0, B - 1)
    LUT[b] = mean(c[q == b])  (0 for an empty bin);  dequant = LUT[q] + mu

The grid is deliberately asymmetric, as in the reference: with B = 4 the levels sit at
{-2, -1, 0, +1}·s around mu, so everything above +0.75 sigma shares one bin. The per-bin
means keep the reconstruction unbiased within each bin. ``round`` is ``torch.round``
(half to even). With fewer than two values sigma is taken as 0 (so s = 1); a single value
then lands in bin B//2 with LUT 0 and comes back exactly as mu.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from spx.kernels import fastpath

BITS = (2, 4, 8)
DEFAULT_RANGE = 6.0


@dataclass(frozen=True)
class QuantParams:
    """What the receiver needs besides the codes: ``shift`` (mu) and the ``lut`` [B] fp32."""

    shift: float
    lut: Tensor

    @property
    def bins(self) -> int:
        return self.lut.numel()


def _step(c: Tensor, bins: int, range_sigmas: float) -> float:
    n = c.numel()
    sigma = float(torch.linalg.vector_norm(c)) / math.sqrt(n - 1) if n > 1 else 0.0
    s = range_sigmas * sigma / bins
    return s if math.isfinite(s) and s != 0.0 else 1.0


def quantize(
    values: Tensor, bits: int = 2, range_sigmas: float = DEFAULT_RANGE
) -> tuple[Tensor, QuantParams]:
    """Quantize ``values`` (any shape) to uint8 codes in ``[0, 2**bits)`` plus :class:`QuantParams`.

    >>> codes, qp = quantize(torch.tensor([-3.0, -1.0, 1.0, 3.0]))
    >>> codes.tolist(), qp.shift, qp.lut.tolist()
    ([1, 2, 2, 3], 0.0, [0.0, -3.0, 0.0, 3.0])
    """
    if bits not in BITS:
        raise ValueError(f"bits must be one of {BITS}, got {bits=}")
    bins = 2**bits
    v = values.detach().reshape(-1).float()
    if v.numel() == 0:
        empty = torch.zeros(bins, dtype=torch.float32, device=v.device)
        return torch.empty(0, dtype=torch.uint8, device=v.device), QuantParams(0.0, empty)
    mu = v.mean()
    c = v - mu
    s = _step(c, bins, range_sigmas)
    if fastpath.enabled(c):
        q, sums, counts = fastpath.ops().quantize_codes(c, s, bins)
    else:
        q = torch.round(c / s + bins // 2).clamp_(0, bins - 1).to(torch.uint8)
        sums = torch.zeros(bins, dtype=torch.float32, device=v.device).index_add_(0, q.long(), c)
        counts = torch.bincount(q.long(), minlength=bins).to(torch.float32)
    lut = torch.where(counts > 0, sums / counts.clamp(min=1.0), torch.zeros_like(sums))
    return q.view(values.shape), QuantParams(float(mu), lut)


def dequantize(codes: Tensor, params: QuantParams) -> Tensor:
    """fp32 reconstruction ``LUT[codes] + shift``, same shape as ``codes``."""
    return params.lut[codes.long()] + params.shift
