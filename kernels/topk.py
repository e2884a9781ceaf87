"""Per-chunk top-k by magnitude, keeping signs (SparseLoCo, Sarfi et al. 2025, arXiv
2508.15706: k per chunk)."""

from __future__ import annotations

import torch
from torch import Tensor

from spx.kernels import fastpath
from spx.kernels.chunking import ChunkLayout, cut


def k_for_chunk(chunk_len: int, topk: int, target: int = 64) -> int:
    """Entries kept per chunk: ``topk`` rescaled from a ``target x target`` chunk to this one.

    ``max(1, round(chunk_len * topk / target**2))`` clamped to ``chunk_len``. ``round`` is
    Python's (half to even), as in the gist this rule comes from.

    >>> k_for_chunk(4096, 64), k_for_chunk(64, 64), k_for_chunk(64, 128), k_for_chunk(3, 64)
    (64, 1, 2, 1)
    """
    k = max(1, round(chunk_len * topk / target**2))
    return min(k, chunk_len)


def topk_per_chunk(chunks: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """The ``k`` largest-``|x|`` entries of each row of ``chunks`` ``[n, chunk_len]``.

    Returns ``(idx, values)``, both ``[n, k]``: ``idx`` int64 chunk-local positions sorted
    ascending (a canonical order, so payloads compare equal), ``values`` the signed entries.
    Ties in ``|x|`` are broken by ``torch.topk``, i.e. unspecified.

    >>> idx, val = topk_per_chunk(torch.tensor([[0.1, -3.0, 2.0, -0.5]]), 2)
    >>> idx.tolist(), val.tolist()
    ([[1, 2]], [[-3.0, 2.0]])
    """
    if not 1 <= k <= chunks.shape[-1]:
        raise ValueError(f"k must be in [1, {chunks.shape[-1]}], got {k=}")
    idx = torch.topk(chunks.abs(), k, dim=-1, sorted=False).indices
    idx = torch.sort(idx, dim=-1).values
    return idx, torch.gather(chunks, -1, idx)


def chunk_topk(x: Tensor, layout: ChunkLayout, k: int) -> tuple[Tensor, Tensor]:
    """:func:`topk_per_chunk` of ``x`` cut into the tiles of ``layout`` (SparseLoCo, Sarfi
    et al. 2025, arXiv 2508.15706).

    ``(idx, values)`` ``[n_chunks, k]``: chunk-local indices ascending and the signed
    entries. On a GPU the Triton fast path reads each tile in place, with no copies.

    >>> from spx.kernels.chunking import layout_for
    >>> x = torch.tensor([[1.0, -5.0, 2.0, 0.0], [-3.0, 0.5, 0.0, 4.0]])
    >>> idx, val = chunk_topk(x, layout_for(x.shape, target=2), 1)
    >>> idx.tolist(), val.tolist()
    ([[1], [3]], [[-5.0], [4.0]])
    """
    if not 1 <= k <= layout.chunk_len:
        raise ValueError(f"k must be in [1, {layout.chunk_len}], got {k=}")
    if fastpath.enabled(x) and fastpath.ops().tile_fits(layout):
        return fastpath.ops().chunk_topk(x, layout, k)
    return topk_per_chunk(cut(x.detach(), layout), k)
