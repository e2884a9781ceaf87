import pytest
import torch

from spx.kernels.chunking import chunk
from spx.kernels.compress import SparseLoCoCompressor

# Two 2x2 chunks, [[4, 0], [0, 1]] and [[0, -2], [3, 0]]; one entry kept per chunk.
LITERAL = torch.tensor([[4.0, 0.0, 0.0, -2.0], [0.0, 1.0, 3.0, 0.0]])


def test_literal_compress():
    payload, sent = SparseLoCoCompressor(topk=1, chunk=2).compress(LITERAL)
    # selected 4 and 3: mu = 3.5, c = +-0.5, s = 6 * 0.7071 / 4 = 1.06, c/s + 2 = 2.47, 1.53,
    # so both fall in bin 2 whose mean is 0 and both come back as 3.5
    assert payload.k == 1 and payload.shape == (2, 4)
    assert payload.shift == pytest.approx(3.5)
    assert sent.tolist() == [[3.5, 0.0, 0.0, 0.0], [0.0, 0.0, 3.5, 0.0]]


@pytest.mark.parametrize(
    "shape", [(), (100,), (7,), (96, 100), (64, 3, 3, 3), (256, 512), (4099, 64)]
)
def test_decompress_equals_transmitted(shape):
    comp = SparseLoCoCompressor()
    payload, sent = comp.compress(torch.randn(shape))
    assert sent.shape == shape
    assert torch.equal(comp.decompress(payload), sent)


def test_each_chunk_sends_exactly_k_entries():
    comp = SparseLoCoCompressor(topk=64)
    payload, sent = comp.compress(torch.randn(128, 192))
    chunks, _ = chunk(sent)
    assert payload.k == 64
    assert ((chunks != 0).sum(dim=1) == 64).all()


def test_transmitted_keeps_input_dtype():
    _, sent = SparseLoCoCompressor().compress(torch.randn(64, 64, dtype=torch.bfloat16))
    assert sent.dtype == torch.bfloat16


def test_wire_size_4096_square_at_topk_64():
    payload, _ = SparseLoCoCompressor(topk=64, chunk=64, bits=2).compress(torch.randn(4096, 4096))
    kept = 4096 * 64  # 4096 chunks of 64x64, 64 each
    expected = kept * 14 // 8 + 4 * 5  # 12-bit index + 2-bit code, plus mu and the 4-entry LUT
    assert payload.nbytes == pytest.approx(expected, rel=0.05)
    ratio = 4096 * 4096 * 4 / payload.nbytes
    assert ratio == pytest.approx(146, rel=0.05)


@pytest.mark.parametrize("bits", [0, 1, 3, 16])
def test_bad_bits(bits):
    with pytest.raises(ValueError, match=f"bits must be one of .*, got {bits}$"):
        SparseLoCoCompressor(bits=bits)


@pytest.mark.parametrize(("topk", "chunk_side"), [(4097, 64), (0, 64), (5, 2)])
def test_bad_topk(topk, chunk_side):
    with pytest.raises(ValueError, match=f"top-k must be in .*, got {topk}$"):
        SparseLoCoCompressor(topk=topk, chunk=chunk_side)


def test_bad_chunk():
    with pytest.raises(ValueError, match="chunk side must be >= 1, got 0"):
        SparseLoCoCompressor(chunk=0)
