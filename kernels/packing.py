"""Bit packing of codes and chunk-local indices (the payload they travel in: wire.py).

Sizes follow SparseLoCo, Sarfi et al. 2025, arXiv 2508.15706: a 2-bit code plus a 12-bit
index (two indices in three
bytes, as templar packs them) is 14 bits per selected entry, plus ``4 * (1 + B)`` bytes of
fp32 shift and LUT per tensor.

Byte layouts (all little-endian):

- codes, ``bits`` in {2, 4, 8}: ``8 // bits`` codes per byte, code ``i`` at bit offset
  ``(i % per_byte) * bits``; the last byte is zero-padded.
- indices, 12 bits (chunk_len <= 4096): the pair ``(a, b)`` becomes bytes
  ``a & 0xFF``, ``(a >> 8) | (b & 0xF) << 4``, ``b >> 4``; an odd count is padded with a 0.
- indices, 16 bits (chunk_len <= 65536) or 32 bits otherwise: plain little-endian ints.
"""

from __future__ import annotations

import sys

import torch
from torch import Tensor

from spx.kernels import fastpath
from spx.kernels.wire import index_bits

if sys.byteorder != "little":  # dtype views below reinterpret native byte order
    raise ImportError("spx.kernels.packing assumes a little-endian host")


def pack_codes(codes: Tensor, bits: int) -> Tensor:
    """Pack uint8 codes (each ``< 2**bits``) into bytes, ``8 // bits`` per byte.

    >>> pack_codes(torch.tensor([1, 2, 3, 0, 3], dtype=torch.uint8), 2).tolist()
    [57, 3]
    """
    if bits not in (2, 4, 8):
        raise ValueError(f"bits must be 2, 4 or 8, got {bits=}")
    if fastpath.enabled(codes):
        return fastpath.ops().pack_codes(codes, bits)
    flat = codes.reshape(-1).to(torch.uint8)
    per_byte = 8 // bits
    pad = -flat.numel() % per_byte
    if pad:
        flat = torch.cat([flat, flat.new_zeros(pad)])
    groups = flat.view(-1, per_byte).to(torch.int32)
    shifts = torch.arange(0, 8, bits, dtype=torch.int32, device=flat.device)
    return (groups << shifts).sum(dim=1).to(torch.uint8)


def unpack_codes(packed: Tensor, bits: int, count: int) -> Tensor:
    """Inverse of :func:`pack_codes`: the first ``count`` codes as uint8."""
    if fastpath.enabled(packed):
        return fastpath.ops().unpack_codes(packed, bits, count)
    shifts = torch.arange(0, 8, bits, dtype=torch.uint8, device=packed.device)
    mask = (1 << bits) - 1
    codes = (packed.view(-1, 1) >> shifts) & mask
    return codes.reshape(-1)[:count]


def pack_indices(idx: Tensor, chunk_len: int) -> Tensor:
    """Pack chunk-local indices (each ``< chunk_len``) at :func:`index_bits` bits each.

    >>> pack_indices(torch.tensor([0xABC, 0x123, 0xFFF]), 4096).tolist()
    [188, 58, 18, 255, 15, 0]
    """
    flat = idx.reshape(-1).to(torch.int32)
    width = index_bits(chunk_len)
    if width == 16:
        return flat.to(torch.int16).view(torch.uint8)  # wraps >32767 to the same bytes
    if width == 32:
        return flat.view(torch.uint8)
    if fastpath.enabled(idx):
        return fastpath.ops().pack_indices12(idx)
    if flat.numel() % 2:
        flat = torch.cat([flat, flat.new_zeros(1)])
    a, b = flat[0::2], flat[1::2]
    out = torch.stack([a & 0xFF, (a >> 8) | ((b & 0xF) << 4), b >> 4], dim=1)
    return out.to(torch.uint8).reshape(-1)


def unpack_indices(packed: Tensor, count: int, chunk_len: int) -> Tensor:
    """Inverse of :func:`pack_indices`: the first ``count`` indices as int64."""
    width = index_bits(chunk_len)
    if width == 16:
        return packed.view(torch.int16).to(torch.int64)[:count] & 0xFFFF
    if width == 32:
        return packed.view(torch.int32).to(torch.int64)[:count]
    if fastpath.enabled(packed):
        return fastpath.ops().unpack_indices12(packed, count)
    triples = packed.view(-1, 3).to(torch.int64)
    a = triples[:, 0] | ((triples[:, 1] & 0xF) << 8)
    b = (triples[:, 1] >> 4) | (triples[:, 2] << 4)
    return torch.stack([a, b], dim=1).reshape(-1)[:count]


def packed_index_nbytes(count: int, chunk_len: int) -> int:
    """Bytes :func:`pack_indices` produces for ``count`` indices."""
    width = index_bits(chunk_len)
    return 3 * ((count + 1) // 2) if width == 12 else count * width // 8


def packed_code_nbytes(count: int, bits: int) -> int:
    """Bytes :func:`pack_codes` produces for ``count`` codes."""
    per_byte = 8 // bits
    return (count + per_byte - 1) // per_byte
