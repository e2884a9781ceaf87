"""The Triton fast paths give what the torch references give.

Without a GPU the kernels run in Triton's interpreter on CPU tensors (see conftest.py);
with one, compiled on the GPU. Either way each kernel is compared with its reference on
the same inputs: random data in shapes that exercise padded tiles, odd counts, partial
blocks and every code and index width.
"""

from __future__ import annotations

import math

import pytest
import torch

pytest.importorskip("triton")

from spx.kernels import fastpath  # noqa: E402
from spx.kernels import triton_ops as fast  # noqa: E402
from spx.kernels.aggregate import aggregate  # noqa: E402
from spx.kernels.chunking import cut, layout_for  # noqa: E402
from spx.kernels.compress import SparseLoCoCompressor, decode_entries, densify  # noqa: E402
from spx.kernels.packing import (  # noqa: E402
    pack_codes,
    pack_indices,
    unpack_codes,
    unpack_indices,
)
from spx.kernels.quant import DEFAULT_RANGE, _step, quantize  # noqa: E402
from spx.kernels.topk import chunk_topk  # noqa: E402

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


@pytest.fixture
def reference(monkeypatch):
    """Force the torch references, whatever the device."""
    monkeypatch.setenv("SPX_KERNELS", "reference")


def rand(*shape, seed=0, dtype=torch.float32):
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=gen).to(dtype=dtype, device=DEVICE)


# (shape, chunk target, k): square 64x64 tiles, divisor-rule tiles (48x50), vectors,
# a conv weight, a scalar, k = chunk_len and k = 1
TOPK_CASES = [
    ((128, 192), 64, 64),
    ((96, 100), 64, 37),
    ((1000,), 64, 3),
    ((16, 3, 3, 3), 64, 5),
    ((), 64, 1),
    ((8, 8), 4, 16),
    ((64, 64), 64, 1),
]


@pytest.mark.parametrize(("shape", "target", "k"), TOPK_CASES)
def test_chunk_topk_equals_reference(reference, shape, target, k):
    x = rand(*shape, seed=len(shape) + k)
    layout = layout_for(x.shape, target)
    ref_idx, ref_val = chunk_topk(x, layout, k)
    idx, val = fast.chunk_topk(x, layout, k)
    assert idx.dtype == torch.int64 and val.dtype == x.dtype
    assert torch.equal(idx, ref_idx)
    assert torch.equal(val, ref_val)


def test_chunk_topk_keeps_signs_and_the_lowest_ties():
    # one 2x4 tile; |x| has a three-way tie at 2 for the last two of k = 3 places
    x = torch.tensor([[2.0, -7.0, 0.5, -2.0], [2.0, 1.0, 0.0, 0.0]], device=DEVICE)
    idx, val = fast.chunk_topk(x, layout_for(x.shape, target=8), 3)
    assert idx.tolist() == [[0, 1, 3]]
    assert val.tolist() == [[2.0, -7.0, -2.0]]


def test_chunk_topk_in_half_precision(reference):
    x = rand(128, 64, seed=3, dtype=torch.bfloat16)
    layout = layout_for(x.shape)
    fast_idx, fast_val = fast.chunk_topk(x, layout, 64)
    ref_idx, ref_val = chunk_topk(x, layout, 64)
    # bf16 has many ties in |x|: compare what was kept by magnitude, not by position
    assert torch.equal(fast_val.abs().sort(dim=1).values, ref_val.abs().sort(dim=1).values)
    assert torch.equal(fast_val, torch.gather(cut(x, layout), 1, fast_idx))
    assert (fast_idx.diff(dim=1) > 0).all()


@pytest.mark.parametrize("bits", [2, 4, 8])
@pytest.mark.parametrize("n", [1, 7, 1000, 3001])
def test_quantize_codes_equal_reference(reference, bits, n):
    # against the CPU reference: torch on CUDA divides by a scalar as a multiply by its
    # reciprocal, which can move a value across a bin edge; the kernel divides exactly
    v = rand(n, seed=n + bits).cpu()
    ref_codes, ref_qp = quantize(v, bits)
    c = v - v.mean()
    codes, sums, counts = fast.quantize_codes(
        c.to(DEVICE), _step(c, 2**bits, DEFAULT_RANGE), 2**bits
    )
    assert torch.equal(codes.cpu(), ref_codes)
    assert torch.equal(counts.cpu(), torch.bincount(ref_codes.long(), minlength=2**bits).float())
    lut = torch.where(counts > 0, sums / counts.clamp(min=1.0), torch.zeros_like(sums))
    torch.testing.assert_close(lut.cpu(), ref_qp.lut, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("bits", [2, 4, 8])
@pytest.mark.parametrize("n", [1, 5, 4096, 5001])
def test_code_packing_round_trips_like_reference(reference, bits, n):
    gen = torch.Generator().manual_seed(n)
    codes = torch.randint(0, 2**bits, (n,), generator=gen, dtype=torch.uint8).to(DEVICE)
    packed = fast.pack_codes(codes, bits)
    assert torch.equal(packed, pack_codes(codes, bits))
    assert torch.equal(fast.unpack_codes(packed, bits, n), codes)
    assert torch.equal(unpack_codes(packed, bits, n), codes)


@pytest.mark.parametrize("n", [1, 2, 3, 4096, 4097])
def test_index_packing_round_trips_like_reference(reference, n):
    gen = torch.Generator().manual_seed(n)
    idx = torch.randint(0, 4096, (n,), generator=gen).to(DEVICE)
    packed = fast.pack_indices12(idx)
    assert torch.equal(packed, pack_indices(idx, 4096))
    assert torch.equal(fast.unpack_indices12(packed, n), idx)
    assert torch.equal(unpack_indices(packed, n, 4096), idx)


# 12-bit indices (64x64 and 48x50 tiles), 16-bit (1x5000 tiles) and 32-bit (1x70000)
DECODE_CASES = [
    ((256, 192), 64, 64),
    ((96, 100), 64, 128),
    ((3, 70000), 70000, 64),
    ((2, 5000), 5000, 64),
]


@pytest.mark.parametrize(("shape", "target", "topk"), DECODE_CASES)
@pytest.mark.parametrize("bits", [2, 8])
def test_decode_stores_what_decompress_gives(reference, shape, target, topk, bits):
    comp = SparseLoCoCompressor(topk=min(topk, target**2), chunk=target, bits=bits)
    payload, sent = comp.compress(rand(*shape, seed=bits))
    out = torch.zeros(math.prod(shape), device=DEVICE)
    fast.decode(payload, out)
    assert torch.equal(out.view(shape), densify(*decode_entries(payload), payload.shape))
    assert torch.equal(out.view(shape), sent)


@pytest.mark.parametrize("mode", ["mean_contrib", "mean_all"])
def test_aggregate_fast_path_equals_reference(monkeypatch, mode):
    comp = SparseLoCoCompressor(topk=128)
    payloads = [comp.compress(rand(128, 96, seed=r))[0] for r in range(4)]
    monkeypatch.setenv("SPX_KERNELS", "reference")
    expected = aggregate(payloads, mode)
    monkeypatch.setenv("SPX_KERNELS", "triton")
    got = aggregate(payloads, mode)
    assert got.shape == (128, 96)
    torch.testing.assert_close(got, expected, rtol=1e-6, atol=0)
    assert torch.equal(got != 0, expected != 0)


def test_ef_update_is_one_fused_pass_of_the_same_update(reference):
    e, d = rand(5000, seed=1), rand(5000, seed=2)
    expected = e.clone().mul_(0.95).add_(d, alpha=0.7)
    got = fast.ef_update(e.clone(), d, 0.95, 0.7)
    torch.testing.assert_close(got, expected, rtol=1e-6, atol=1e-7)


def test_compressor_through_the_fast_path_sends_the_same_payload(monkeypatch):
    comp = SparseLoCoCompressor()
    x = rand(192, 256, seed=5)
    monkeypatch.setenv("SPX_KERNELS", "reference")
    ref_payload, ref_sent = comp.compress(x)
    monkeypatch.setenv("SPX_KERNELS", "triton")
    payload, sent = comp.compress(x)
    assert torch.equal(payload.indices, ref_payload.indices)
    assert torch.equal(payload.codes, ref_payload.codes)
    assert payload.shift == ref_payload.shift
    torch.testing.assert_close(payload.lut, ref_payload.lut, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(sent, ref_sent, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(comp.decompress(payload), sent, rtol=0, atol=0)
    assert payload.nbytes == ref_payload.nbytes


def test_auto_takes_triton_only_for_cuda_tensors(monkeypatch):
    monkeypatch.setenv("SPX_KERNELS", "auto")
    assert fastpath.enabled(torch.zeros(1)) is False
    monkeypatch.setenv("SPX_KERNELS", "reference")
    assert fastpath.enabled(torch.zeros(1)) is False
    monkeypatch.setenv("SPX_KERNELS", "triton")
    assert fastpath.enabled(torch.zeros(1)) is True


def test_bad_mode_names_the_variable(monkeypatch):
    monkeypatch.setenv("SPX_KERNELS", "fast")
    with pytest.raises(ValueError, match="SPX_KERNELS.*'fast'"):
        fastpath.enabled(torch.zeros(1))
