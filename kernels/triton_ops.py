"""Triton fast paths of the SparseLoCo kernels, for tensors on a GPU (issue 4).

Each public function computes what the torch reference named in its docstring computes,
in fewer passes over memory: :func:`chunk_topk` reads every tile straight from the
weight's own layout (no ``abs`` copy, no tile-rearranging copy, no sort) and finds the
k-th largest magnitude of each tile by a bisection on the float bits; :func:`decode`
unpacks indices and codes, looks up the table and scatters in one pass, for
``decompress`` and for the R-payload aggregation alike.

This module imports Triton, and ``@triton.jit`` decides at import whether kernels compile
for the GPU or run in Triton's interpreter (``TRITON_INTERPRET=1``, numpy on CPU
tensors). Import it only through :mod:`spx.kernels.fastpath`, which picks per call
between these and the references. The test suite sets ``TRITON_INTERPRET=1`` on a machine
without CUDA and checks every kernel here against its reference on CPU tensors; with a GPU
the same tests run compiled.

Exactness against the reference: indices, codes and packed bytes are equal (ties in
top-k aside, where torch's order is unspecified and this kernel takes the lowest
positions); ``div_rn`` keeps the quantizer's division IEEE-exact. The quantizer's table
sums add per-program partial sums with atomics, so on a GPU their last bits can vary from
run to run (as torch's own CUDA ``index_add_`` does); every rank decodes with the sender's
table, so ranks still agree. Aggregation adds one payload per launch and a payload names
each position once, so each position sums its payloads in rank order: every rank gets the
same bits. The error-feedback update is one fused multiply-add where the CPU reference
rounds ``e * beta`` first.
"""

from __future__ import annotations

import contextlib
import os
import threading
from typing import Any

import torch
import triton
import triton.language as tl
from torch import Tensor

from spx.kernels.chunking import ChunkLayout, layout_for
from spx.kernels.wire import WirePayload, index_bits

BLOCK = 1024  # elements per program of the elementwise kernels
# Largest padded tile chunk_topk holds in one program: 128x64 at 16 warps keeps it in
# registers on sm_90 (ptxas -v: a 128x128 tile spills); bigger tiles take the reference.
MAX_TILE = 8192
# halvings of [0, 2**31 - 1), the range of a non-negative float's bits; a kernel can only
# read a global that is a constexpr
BISECT_STEPS = tl.constexpr(31)


# Triton's interpreter swaps functions of triton.language in and out around each launch, so
# two threads interpreting at once break each other (ThreadComm's ranks did); compiled
# launches need no lock.
_LAUNCH_GUARD: contextlib.AbstractContextManager[Any] = (
    threading.Lock() if os.environ.get("TRITON_INTERPRET") == "1" else contextlib.nullcontext()
)


def _launch(kernel: Any, programs: int, *args: Any, **kwargs: Any) -> None:
    """Run ``kernel`` on a 1-D grid of ``programs``; none at all is a no-op (Triton would
    refuse an empty grid)."""
    if programs > 0:
        with _LAUNCH_GUARD:
            kernel[(programs,)](*args, **kwargs)


def _warps(tile: int) -> int:
    """Warps for a padded tile: 4 up to 2048 entries, then one per 512 (16 at 8192)."""
    return min(16, max(4, tile // 512))


def tile_fits(layout: ChunkLayout) -> bool:
    """Whether :func:`chunk_topk` handles this layout (a padded tile of <= MAX_TILE)."""
    return triton.next_power_of_2(layout.h) * triton.next_power_of_2(layout.w) <= MAX_TILE


@triton.jit
def _chunk_topk_kernel(
    x_ptr, idx_ptr, val_ptr, cols, h, w, nx, k, BH: tl.constexpr, BW: tl.constexpr
):
    pid = tl.program_id(0)
    i = tl.arange(0, BH)[:, None]
    j = tl.arange(0, BW)[None, :]
    inside = (i < h) & (j < w)
    offs = ((pid // nx) * h + i).to(tl.int64) * cols + (pid % nx).to(tl.int64) * w + j
    x = tl.load(x_ptr + offs, mask=inside, other=0.0)
    # |x| as int32 bits orders like |x| itself; padding gets -1, below every real entry
    bits = tl.where(inside, tl.abs(x.to(tl.float32)).to(tl.int32, bitcast=True), -1)
    lo = 0  # invariant: at least k entries have bits >= lo, fewer than k have bits >= hi
    hi = 0x7FFFFFFF
    for _ in tl.static_range(BISECT_STEPS):
        mid = lo + (hi - lo) // 2
        enough = tl.sum((bits >= mid).to(tl.int32)) >= k
        lo = tl.where(enough, mid, lo)
        hi = tl.where(enough, hi, mid)
    # lo is now the k-th largest: keep everything above it and the first ties at it
    above = tl.reshape(bits > lo, [BH * BW])
    at = tl.reshape(bits == lo, [BH * BW])
    room = k - tl.sum(above.to(tl.int32))
    take = above | (at & (tl.cumsum(at.to(tl.int32), 0) <= room))
    slot = pid.to(tl.int64) * k + tl.cumsum(take.to(tl.int32), 0) - 1
    local = tl.reshape(i * w + j, [BH * BW])
    tl.store(idx_ptr + slot, local.to(tl.int64), mask=take)
    # the signed values are read again for the k kept entries only, rather than keeping the
    # whole tile live in registers through the bisection
    kept = tl.load(x_ptr + tl.reshape(offs, [BH * BW]), mask=take)
    tl.store(val_ptr + slot, kept, mask=take)


def chunk_topk(x: Tensor, layout: ChunkLayout, k: int) -> tuple[Tensor, Tensor]:
    """Fast path of :func:`spx.kernels.topk.chunk_topk`: ``(idx, values)`` ``[n_chunks, k]``,
    chunk-local indices ascending, values signed in ``x``'s dtype."""
    x = x.detach().contiguous()
    idx = torch.empty(layout.n_chunks, k, dtype=torch.int64, device=x.device)
    val = torch.empty(layout.n_chunks, k, dtype=x.dtype, device=x.device)
    bh, bw = triton.next_power_of_2(layout.h), triton.next_power_of_2(layout.w)
    nx = layout.cols // layout.w
    _launch(
        _chunk_topk_kernel,
        layout.n_chunks,
        x,
        idx,
        val,
        layout.cols,
        layout.h,
        layout.w,
        nx,
        k,
        BH=bh,
        BW=bw,
        num_warps=_warps(bh * bw),
    )
    return idx, val


@triton.jit
def _quantize_kernel(
    c_ptr, code_ptr, sum_ptr, count_ptr, n, step, BINS: tl.constexpr, BLOCK: tl.constexpr
):
    offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    live = offs < n
    c = tl.load(c_ptr + offs, mask=live, other=0.0)
    t = tl.math.div_rn(c, step) + BINS // 2
    # round half to even, as torch.round
    f = tl.floor(t)
    frac = t - f
    odd = tl.floor(f * 0.5) != f * 0.5
    r = tl.where(frac > 0.5, f + 1.0, tl.where(frac < 0.5, f, tl.where(odd, f + 1.0, f)))
    q = tl.minimum(tl.maximum(r, 0.0), BINS - 1.0).to(tl.int32)
    tl.store(code_ptr + offs, q.to(tl.uint8), mask=live)
    # per-bin partial sums and counts of this program, added with one atomic per bin
    if BINS <= 4:  # 2-bit codes, the default: one [BLOCK, BINS] one-hot tile
        b = tl.arange(0, BINS)
        onehot = live[:, None] & (q[:, None] == b[None, :])
        tl.atomic_add(sum_ptr + b, tl.sum(tl.where(onehot, c[:, None], 0.0), axis=0))
        tl.atomic_add(count_ptr + b, tl.sum(onehot.to(tl.int32), axis=0))
    else:
        for b in range(BINS):
            in_bin = live & (q == b)
            tl.atomic_add(sum_ptr + b, tl.sum(tl.where(in_bin, c, 0.0)))
            tl.atomic_add(count_ptr + b, tl.sum(in_bin.to(tl.int32)))


def quantize_codes(c: Tensor, step: float, bins: int) -> tuple[Tensor, Tensor, Tensor]:
    """Fast path of the codes and per-bin sums in :func:`spx.kernels.quant.quantize`:
    ``(codes uint8, sums fp32 [bins], counts fp32 [bins])`` of centred values ``c``."""
    c = c.detach().float().contiguous().reshape(-1)
    codes = torch.empty(c.numel(), dtype=torch.uint8, device=c.device)
    sums = torch.zeros(bins, dtype=torch.float32, device=c.device)
    counts = torch.zeros(bins, dtype=torch.int32, device=c.device)  # exact past 2**24
    programs = triton.cdiv(c.numel(), BLOCK)
    _launch(
        _quantize_kernel, programs, c, codes, sums, counts, c.numel(), step, BINS=bins, BLOCK=BLOCK
    )
    return codes, sums, counts.float()


@triton.jit
def _pack_codes_kernel(
    code_ptr, out_ptr, n_codes, n_bytes, BITS: tl.constexpr, BLOCK: tl.constexpr
):
    byte = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    live = byte < n_bytes
    acc = tl.zeros([BLOCK], dtype=tl.int32)
    for s in tl.static_range(8 // BITS):
        at = byte * (8 // BITS) + s
        code = tl.load(code_ptr + at, mask=live & (at < n_codes), other=0).to(tl.int32)
        acc |= code << (s * BITS)
    tl.store(out_ptr + byte, acc.to(tl.uint8), mask=live)


def pack_codes(codes: Tensor, bits: int) -> Tensor:
    """Fast path of :func:`spx.kernels.packing.pack_codes`."""
    flat = codes.reshape(-1).to(torch.uint8).contiguous()
    per_byte = 8 // bits
    n_bytes = (flat.numel() + per_byte - 1) // per_byte
    out = torch.empty(n_bytes, dtype=torch.uint8, device=flat.device)
    programs = triton.cdiv(n_bytes, BLOCK)
    _launch(_pack_codes_kernel, programs, flat, out, flat.numel(), n_bytes, BITS=bits, BLOCK=BLOCK)
    return out


@triton.jit
def _code_at(packed_ptr, i, live, BITS: tl.constexpr):
    byte = tl.load(packed_ptr + i // (8 // BITS), mask=live, other=0).to(tl.int32)
    return (byte >> ((i % (8 // BITS)) * BITS)) & ((1 << BITS) - 1)


@triton.jit
def _index_at(packed_ptr, i, live, IDX_BITS: tl.constexpr):
    if IDX_BITS == 12:  # two indices in three bytes
        base = (i // 2) * 3
        b0 = tl.load(packed_ptr + base, mask=live, other=0).to(tl.int32)
        b1 = tl.load(packed_ptr + base + 1, mask=live, other=0).to(tl.int32)
        b2 = tl.load(packed_ptr + base + 2, mask=live, other=0).to(tl.int32)
        value = tl.where(i % 2 == 0, b0 | ((b1 & 0xF) << 8), (b1 >> 4) | (b2 << 4))
    else:  # plain little-endian 16- or 32-bit ints
        value = i * 0
        for s in tl.static_range(IDX_BITS // 8):
            b = tl.load(packed_ptr + i * (IDX_BITS // 8) + s, mask=live, other=0).to(tl.int32)
            value |= b << (8 * s)
    return value


@triton.jit
def _unpack_kernel(
    packed_ptr, out_ptr, count, WIDTH: tl.constexpr, CODES: tl.constexpr, BLOCK: tl.constexpr
):
    i = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    live = i < count
    if CODES:  # noqa: SIM108 (a compile-time branch: only one side is built)
        value = _code_at(packed_ptr, i, live, WIDTH)
    else:
        value = _index_at(packed_ptr, i, live, WIDTH)
    tl.store(out_ptr + i, value.to(out_ptr.dtype.element_ty), mask=live)


def _unpack(packed: Tensor, count: int, width: int, codes: bool) -> Tensor:
    out = torch.empty(count, dtype=torch.uint8 if codes else torch.int64, device=packed.device)
    programs = triton.cdiv(count, BLOCK)
    _launch(
        _unpack_kernel,
        programs,
        packed.contiguous(),
        out,
        count,
        WIDTH=width,
        CODES=codes,
        BLOCK=BLOCK,
    )
    return out


def unpack_codes(packed: Tensor, bits: int, count: int) -> Tensor:
    """Fast path of :func:`spx.kernels.packing.unpack_codes`."""
    return _unpack(packed, count, bits, codes=True)


@triton.jit
def _pack_indices12_kernel(idx_ptr, out_ptr, n, n_pairs, BLOCK: tl.constexpr):
    pair = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    live = pair < n_pairs
    a = tl.load(idx_ptr + 2 * pair, mask=live, other=0).to(tl.int32)
    b = tl.load(idx_ptr + 2 * pair + 1, mask=live & (2 * pair + 1 < n), other=0).to(tl.int32)
    tl.store(out_ptr + 3 * pair, (a & 0xFF).to(tl.uint8), mask=live)
    tl.store(out_ptr + 3 * pair + 1, ((a >> 8) | ((b & 0xF) << 4)).to(tl.uint8), mask=live)
    tl.store(out_ptr + 3 * pair + 2, (b >> 4).to(tl.uint8), mask=live)


def pack_indices12(idx: Tensor) -> Tensor:
    """Fast path of :func:`spx.kernels.packing.pack_indices` for 12-bit indices."""
    flat = idx.reshape(-1).contiguous()
    n_pairs = (flat.numel() + 1) // 2
    out = torch.empty(3 * n_pairs, dtype=torch.uint8, device=flat.device)
    programs = triton.cdiv(n_pairs, BLOCK)
    _launch(_pack_indices12_kernel, programs, flat, out, flat.numel(), n_pairs, BLOCK=BLOCK)
    return out


def unpack_indices12(packed: Tensor, count: int) -> Tensor:
    """Fast path of :func:`spx.kernels.packing.unpack_indices` for 12-bit indices."""
    return _unpack(packed, count, 12, codes=False)


@triton.jit
def _decode_kernel(
    idx_ptr,
    code_ptr,
    lut_ptr,
    shift,
    out_ptr,
    count_ptr,
    n,
    k,
    cols,
    h,
    w,
    nx,
    IDX_BITS: tl.constexpr,
    BITS: tl.constexpr,
    ACCUMULATE: tl.constexpr,
    BLOCK: tl.constexpr,
):
    e = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    live = e < n
    local = _index_at(idx_ptr, e, live, IDX_BITS)
    code = _code_at(code_ptr, e, live, BITS)
    value = tl.load(lut_ptr + code, mask=live, other=0.0) + shift
    tile = e // k
    row = (tile // nx) * h + local // w
    col = (tile % nx) * w + local % w
    flat = row.to(tl.int64) * cols + col
    if ACCUMULATE:
        tl.atomic_add(out_ptr + flat, value, mask=live)
        tl.atomic_add(count_ptr + flat, 1.0, mask=live)
    else:
        tl.store(out_ptr + flat, value, mask=live)


def decode(payload: WirePayload, out: Tensor, counts: Tensor | None = None) -> None:
    """Scatter ``payload`` into the flat fp32 ``out``: stored (``counts`` None, the fast
    path of ``decompress``) or added, with ``counts`` += 1 where it lands (aggregation)."""
    layout = layout_for(payload.shape, payload.chunk)
    n = layout.n_chunks * payload.k
    accumulate = counts is not None
    _launch(
        _decode_kernel,
        triton.cdiv(n, BLOCK),
        payload.indices.contiguous(),
        payload.codes.contiguous(),
        payload.lut.to(device=out.device, dtype=torch.float32).contiguous(),
        payload.shift,
        out,
        counts if accumulate else out,
        n,
        payload.k,
        layout.cols,
        layout.h,
        layout.w,
        layout.cols // layout.w,
        IDX_BITS=index_bits(layout.chunk_len),
        BITS=payload.bits,
        ACCUMULATE=accumulate,
        BLOCK=BLOCK,
    )


@triton.jit
def _ef_update_kernel(e_ptr, d_ptr, n, beta, alpha, BLOCK: tl.constexpr):
    offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    live = offs < n
    e = tl.load(e_ptr + offs, mask=live).to(tl.float32)
    d = tl.load(d_ptr + offs, mask=live).to(tl.float32)
    tl.store(e_ptr + offs, tl.fma(d, alpha, e * beta).to(e_ptr.dtype.element_ty), mask=live)


def ef_update(e: Tensor, delta: Tensor, beta: float, alpha: float) -> Tensor:
    """Fast path of :func:`spx.kernels.feedback.ef_update` (in place on a contiguous ``e``):
    one pass instead of the reference's two."""
    d = delta.detach().contiguous()
    programs = triton.cdiv(e.numel(), BLOCK)
    _launch(_ef_update_kernel, programs, e, d, e.numel(), beta, alpha, BLOCK=BLOCK)
    return e
