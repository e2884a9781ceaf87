"""Chunk a tensor into square tiles for per-chunk top-k (SparseLoCo, Sarfi et al. 2025,
arXiv 2508.15706: chunking).

Every tensor is first viewed as a matrix ``(a, b)``: a 0-d scalar as ``(1, 1)``, a 1-D
vector (bias, norm gain) as ``(1, n)``, a 2-D ``(out, in)`` weight as itself and an N-D
weight (conv) as ``(shape[0], prod(shape[1:]))``. Each side gets a chunk side from the
divisor rule (SparseLoCo's code) and the matrix is rearranged
``(y h)(x w) -> (y x)(h w)``, so row ``i`` of the result is one ``h x w`` tile, flattened.
With the ``(1, n)`` view a vector falls out as chunks of ``chunk_side(n)`` elements, which
is the reference's 1-D rule, so one code path serves every rank.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor


def _divisors(n: int) -> list[int]:
    small = [d for d in range(1, math.isqrt(n) + 1) if n % d == 0]
    return sorted(set(small + [n // d for d in small]))


def chunk_side(n: int, target: int = 64) -> int:
    """Chunk side for a dimension of size ``n``: the divisor rule of SparseLoCo's code.

    ``target`` if it divides ``n``; else the largest divisor of ``n`` below ``target``;
    else the smallest divisor above it (reachable only when ``target < 1``, since 1
    divides everything).

    >>> [chunk_side(n) for n in (64, 96, 100, 7, 130, 4096)]
    [64, 48, 50, 7, 26, 64]
    """
    if n < 1:
        raise ValueError(f"dimension must be >= 1, got {n=}")
    divisors = _divisors(n)
    if target in divisors:
        return target
    below = [d for d in divisors if d < target]
    if below:
        return below[-1]
    return min(d for d in divisors if d > target)


@dataclass(frozen=True)
class ChunkLayout:
    """How a tensor of ``shape`` was cut: its ``(rows, cols)`` matrix view in ``h x w`` tiles."""

    shape: tuple[int, ...]
    rows: int
    cols: int
    h: int
    w: int

    @property
    def n_chunks(self) -> int:
        return (self.rows // self.h) * (self.cols // self.w)

    @property
    def chunk_len(self) -> int:
        return self.h * self.w

    @property
    def numel(self) -> int:
        return self.rows * self.cols


def _matrix_view(shape: tuple[int, ...]) -> tuple[int, int]:
    if len(shape) == 0:
        return 1, 1
    if len(shape) == 1:
        return 1, shape[0]
    return shape[0], math.prod(shape[1:])


def layout_for(shape: tuple[int, ...] | torch.Size, target: int = 64) -> ChunkLayout:
    """The layout :func:`chunk` uses for ``shape``; a receiver rebuilds it from the shape alone.

    >>> layout_for((96, 100))
    ChunkLayout(shape=(96, 100), rows=96, cols=100, h=48, w=50)
    """
    shape = tuple(int(s) for s in shape)
    if any(s == 0 for s in shape):
        raise ValueError(f"cannot chunk an empty tensor, got {shape=}")
    rows, cols = _matrix_view(shape)
    return ChunkLayout(shape, rows, cols, chunk_side(rows, target), chunk_side(cols, target))


def chunk(t: Tensor, target: int = 64) -> tuple[Tensor, ChunkLayout]:
    """Cut ``t`` into ``[n_chunks, chunk_len]`` tiles, plus the layout to undo it.

    The result may share storage with ``t`` (a 1-D input needs no copy); do not write to it.

    >>> x = torch.arange(16.0).view(4, 4)
    >>> chunks, layout = chunk(x, target=2)
    >>> chunks[0].tolist(), chunks[1].tolist()  # top-left and top-right 2x2 tiles
    ([0.0, 1.0, 4.0, 5.0], [2.0, 3.0, 6.0, 7.0])
    >>> torch.equal(unchunk(chunks, layout), x)
    True
    """
    layout = layout_for(t.shape, target)
    return cut(t, layout), layout


def cut(t: Tensor, layout: ChunkLayout) -> Tensor:
    """:func:`chunk` for a layout already known: ``t`` as ``[n_chunks, chunk_len]`` tiles."""
    y, x = layout.rows // layout.h, layout.cols // layout.w
    tiles = t.reshape(y, layout.h, x, layout.w).permute(0, 2, 1, 3)
    return tiles.reshape(y * x, layout.chunk_len)


def unchunk(chunks: Tensor, layout: ChunkLayout) -> Tensor:
    """Inverse of :func:`chunk`: ``[n_chunks, chunk_len]`` back to ``layout.shape``."""
    y, x = layout.rows // layout.h, layout.cols // layout.w
    tiles = chunks.reshape(y, x, layout.h, layout.w).permute(0, 2, 1, 3)
    return tiles.reshape(layout.shape)


def flat_index(local: Tensor, layout: ChunkLayout) -> Tensor:
    """Row-major positions in the original tensor of chunk-local indices ``local`` ``[n, k]``.

    Lets a scatter write straight into a tensor of ``layout.shape`` without an
    :func:`unchunk` copy.

    >>> layout = layout_for((4, 4), target=2)
    >>> flat_index(torch.tensor([[0], [3], [1], [2]]), layout).tolist()
    [[0], [7], [9], [14]]
    """
    x = layout.cols // layout.w
    chunk_id = torch.arange(layout.n_chunks, device=local.device).unsqueeze(1)
    row = (chunk_id // x) * layout.h + local // layout.w
    col = (chunk_id % x) * layout.w + local % layout.w
    return row * layout.cols + col
