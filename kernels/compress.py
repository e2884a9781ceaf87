"""SparseLoCo's per-tensor compressor: chunk, top-k, quantize, pack (SparseLoCo, Sarfi et
al. 2025, arXiv 2508.15706).

``compress`` also returns the dense tensor the receivers will reconstruct (dequantized
values scattered back), which is what the error-feedback accumulator must subtract
(the error feedback keeps that difference). Defaults are the reference code's: chunk 64,
top-k 64 per 64x64 chunk
(1.5625 % density), 2-bit codes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from spx.kernels import fastpath
from spx.kernels.chunking import flat_index, layout_for
from spx.kernels.packing import (
    pack_codes,
    pack_indices,
    unpack_codes,
    unpack_indices,
)
from spx.kernels.quant import BITS, DEFAULT_RANGE, QuantParams, dequantize, quantize
from spx.kernels.topk import chunk_topk, k_for_chunk
from spx.kernels.wire import WirePayload


def decode_entries(payload: WirePayload) -> tuple[Tensor, Tensor]:
    """Unpack a payload into ``(flat, values)``: int64 row-major positions in a tensor of
    ``payload.shape`` and the fp32 dequantized values sent there."""
    layout = layout_for(payload.shape, payload.chunk)
    count = layout.n_chunks * payload.k
    local = unpack_indices(payload.indices, count, layout.chunk_len).view(-1, payload.k)
    codes = unpack_codes(payload.codes, payload.bits, count)
    values = dequantize(codes, QuantParams(payload.shift, payload.lut.to(codes.device)))
    return flat_index(local, layout).reshape(-1), values


def densify(flat: Tensor, values: Tensor, shape: tuple[int, ...]) -> Tensor:
    """Scatter ``values`` at row-major positions ``flat`` into a zero tensor of ``shape``."""
    dense = values.new_zeros(math.prod(shape)).index_put_((flat.reshape(-1),), values.reshape(-1))
    return dense.view(shape)


@dataclass(frozen=True)
class SparseLoCoCompressor:
    """Top-``topk``-per-``chunk``x``chunk`` sparsifier with ``bits``-bit statistical codes.

    >>> comp = SparseLoCoCompressor(topk=1, chunk=2, bits=2)
    >>> payload, sent = comp.compress(torch.tensor([[4.0, 0.0], [0.0, 1.0]]))
    >>> sent.tolist()  # one entry kept of the single 2x2 chunk, recovered exactly
    [[4.0, 0.0], [0.0, 0.0]]
    >>> torch.equal(comp.decompress(payload), sent)
    True
    """

    topk: int = 64
    chunk: int = 64
    bits: int = 2
    range_sigmas: float = DEFAULT_RANGE

    def __post_init__(self) -> None:
        if self.chunk < 1:
            raise ValueError(f"chunk side must be >= 1, got {self.chunk}")
        if not 1 <= self.topk <= self.chunk**2:
            raise ValueError(f"top-k must be in [1, chunk**2 = {self.chunk**2}], got {self.topk}")
        if self.bits not in BITS:
            raise ValueError(f"bits must be one of {BITS}, got {self.bits}")
        if not self.range_sigmas > 0:
            raise ValueError(f"range_sigmas must be > 0, got {self.range_sigmas}")

    def compress(self, tensor: Tensor) -> tuple[WirePayload, Tensor]:
        """``(payload, transmitted)``; ``transmitted`` has ``tensor``'s shape and dtype."""
        layout = layout_for(tensor.shape, self.chunk)
        k = k_for_chunk(layout.chunk_len, self.topk, self.chunk)
        local, values = chunk_topk(tensor, layout, k)
        codes, qp = quantize(values, self.bits, self.range_sigmas)
        sent = densify(flat_index(local, layout), dequantize(codes, qp), layout.shape)
        payload = WirePayload(
            shape=layout.shape,
            chunk=self.chunk,
            k=k,
            bits=self.bits,
            indices=pack_indices(local, layout.chunk_len),
            codes=pack_codes(codes, self.bits),
            shift=qp.shift,
            lut=qp.lut,
        )
        return payload, sent.to(tensor.dtype)

    def decompress(self, payload: WirePayload) -> Tensor:
        """The fp32 dense tensor one payload stands for (equal to ``compress``'s second output
        when that was fp32)."""
        return decompress(payload)


def decompress(payload: WirePayload) -> Tensor:
    """The fp32 dense tensor ``payload`` stands for; one fused kernel on a GPU."""
    if fastpath.enabled(payload.indices, payload.codes):
        out = torch.zeros(math.prod(payload.shape), device=payload.indices.device)
        fastpath.ops().decode(payload, out)
        return out.view(payload.shape)
    return densify(*decode_entries(payload), payload.shape)
