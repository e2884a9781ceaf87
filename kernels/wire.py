"""The per-tensor wire payload of SparseLoCo and the index width it packs with.

Pure data, no kernels: both the torch references (packing.py) and the Triton fast paths
(triton_ops.py) build and read it, so neither imports the other's module for it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


def index_bits(chunk_len: int) -> int:
    """Bits per chunk-local index: 12 up to 4096 positions, then 16, then 32."""
    if chunk_len <= 4096:
        return 12
    return 16 if chunk_len <= 65536 else 32


@dataclass(frozen=True, eq=False)
class WirePayload:
    """One tensor's compressed update as it travels: packed buffers plus the fp32 table.

    ``shape``, ``chunk`` (the target chunk side), ``k`` and ``bits`` are metadata that every
    worker already knows from the model and the config, so :attr:`nbytes` does not count
    them (this is SparseLoCo's own accounting of bytes per sync). :meth:`to_bytes` adds a small
    self-describing header of int32 fields (:attr:`header_nbytes`) for transports that
    need one.
    """

    shape: tuple[int, ...]
    chunk: int
    k: int
    bits: int
    indices: Tensor  # uint8, packed chunk-local indices, chunk-major
    codes: Tensor  # uint8, packed quantization codes, same order as indices
    shift: float
    lut: Tensor  # fp32 [2**bits]

    @property
    def table_nbytes(self) -> int:
        return 4 * (1 + self.lut.numel())

    @property
    def nbytes(self) -> int:
        """Index bytes + code bytes + fp32 shift and LUT; no header (see the class doc)."""
        return self.indices.numel() + self.codes.numel() + self.table_nbytes

    @property
    def header_nbytes(self) -> int:
        return 4 * (_FIXED_HEADER + len(self.shape))

    def to_bytes(self) -> Tensor:
        """One uint8 tensor: header, shift, LUT, index bytes, code bytes.

        >>> p = WirePayload((3,), 64, 1, 2, torch.tensor([1, 0, 0], dtype=torch.uint8),
        ...                 torch.tensor([2], dtype=torch.uint8), 0.5, torch.zeros(4))
        >>> WirePayload.from_bytes(p.to_bytes()) == p
        True
        >>> p.to_bytes().numel() == p.nbytes + p.header_nbytes
        True
        """
        head = [_VERSION, self.chunk, self.k, self.bits, self.indices.numel(), len(self.shape)]
        head_t = torch.tensor(head + list(self.shape), dtype=torch.int32)
        table = torch.cat([torch.tensor([self.shift], dtype=torch.float32), self.lut.float().cpu()])
        parts = [head_t.view(torch.uint8), table.view(torch.uint8)]
        return torch.cat(parts + [self.indices.cpu(), self.codes.cpu()])

    @classmethod
    def from_bytes(cls, buf: Tensor) -> WirePayload:
        """Inverse of :meth:`to_bytes`."""
        fixed = buf[: 4 * _FIXED_HEADER].view(torch.int32).tolist()
        version, chunk, k, bits, n_index, ndim = fixed
        if version != _VERSION:
            raise ValueError(f"unknown payload version, got {version=}")
        pos = 4 * _FIXED_HEADER
        shape = tuple(buf[pos : pos + 4 * ndim].view(torch.int32).tolist())
        pos += 4 * ndim
        n_table = 1 + 2**bits
        table = buf[pos : pos + 4 * n_table].view(torch.float32)
        pos += 4 * n_table
        indices = buf[pos : pos + n_index].clone()
        codes = buf[pos + n_index :].clone()
        return cls(shape, chunk, k, bits, indices, codes, float(table[0]), table[1:].clone())

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, WirePayload):
            return NotImplemented
        meta = (self.shape, self.chunk, self.k, self.bits, self.shift)
        other_meta = (other.shape, other.chunk, other.k, other.bits, other.shift)
        return (
            meta == other_meta
            and torch.equal(self.indices.cpu(), other.indices.cpu())
            and torch.equal(self.codes.cpu(), other.codes.cpu())
            and torch.equal(self.lut.cpu(), other.lut.cpu())
        )


_VERSION = 1
_FIXED_HEADER = 6  # version, chunk, k, bits, index byte count, ndim
