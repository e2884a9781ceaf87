import pytest
import torch

from spx.kernels.compress import SparseLoCoCompressor
from spx.kernels.packing import (
    pack_codes,
    pack_indices,
    packed_code_nbytes,
    packed_index_nbytes,
    unpack_codes,
    unpack_indices,
)
from spx.kernels.wire import WirePayload, index_bits


def test_2bit_codes_four_per_byte_little_end_first():
    codes = torch.tensor([1, 2, 3, 0, 3], dtype=torch.uint8)
    packed = pack_codes(codes, 2)
    # 1 | 2<<2 | 3<<4 | 0<<6 = 57; the fifth code alone in a zero-padded byte
    assert packed.tolist() == [57, 3]
    assert unpack_codes(packed, 2, 5).tolist() == [1, 2, 3, 0, 3]


def test_4bit_codes_two_per_byte():
    packed = pack_codes(torch.tensor([1, 15, 7], dtype=torch.uint8), 4)
    assert packed.tolist() == [1 | 15 << 4, 7]
    assert unpack_codes(packed, 4, 3).tolist() == [1, 15, 7]


@pytest.mark.parametrize("bits", [2, 4, 8])
@pytest.mark.parametrize("count", [1, 3, 5, 7, 1001])
def test_code_round_trip(bits, count):
    codes = torch.randint(0, 2**bits, (count,), dtype=torch.uint8)
    packed = pack_codes(codes, bits)
    assert packed.numel() == packed_code_nbytes(count, bits)
    assert torch.equal(unpack_codes(packed, bits, count), codes)


def test_12bit_indices_two_in_three_bytes():
    packed = pack_indices(torch.tensor([0xABC, 0x123, 0xFFF]), 4096)
    # (0xABC, 0x123) -> 0xBC, 0xA | 0x3 << 4, 0x12; then 0xFFF with a zero pad
    assert packed.tolist() == [0xBC, 0x3A, 0x12, 0xFF, 0x0F, 0x00]
    assert unpack_indices(packed, 3, 4096).tolist() == [0xABC, 0x123, 0xFFF]


@pytest.mark.parametrize(
    ("chunk_len", "width"), [(1, 12), (4096, 12), (4097, 16), (65536, 16), (65537, 32)]
)
def test_index_width(chunk_len, width):
    assert index_bits(chunk_len) == width


@pytest.mark.parametrize("chunk_len", [50, 4096, 65536, 100_000])
@pytest.mark.parametrize("count", [1, 2, 5, 101])
def test_index_round_trip(chunk_len, count):
    idx = torch.randint(0, chunk_len, (count,))
    idx[0] = chunk_len - 1  # the largest index must survive
    packed = pack_indices(idx, chunk_len)
    assert packed.dtype == torch.uint8
    assert packed.numel() == packed_index_nbytes(count, chunk_len)
    assert torch.equal(unpack_indices(packed, count, chunk_len), idx)


def test_payload_bytes_round_trip():
    payload, _ = SparseLoCoCompressor(topk=8, chunk=8).compress(torch.randn(24, 40))
    buf = payload.to_bytes()
    assert buf.dtype == torch.uint8 and buf.dim() == 1
    assert buf.numel() == payload.nbytes + payload.header_nbytes
    assert WirePayload.from_bytes(buf) == payload


def test_payload_nbytes_counts_buffers_and_table_only():
    payload, _ = SparseLoCoCompressor(topk=64, chunk=64).compress(torch.randn(64, 64))
    # one 4096-chunk, k = 64: 64 * 12 bits = 96 B, 64 * 2 bits = 16 B, 5 floats = 20 B
    assert payload.nbytes == 96 + 16 + 20
