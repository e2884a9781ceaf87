"""Masks of one-shot post-training pruning for one linear layer (weight out x in).

- magnitude: the smallest ``|W|`` over the whole layer (the baseline of both papers below);
- Wanda (Sun et al. 2023, "A Simple and Effective Pruning Approach for Large Language
  Models"): ``S_ij = |W_ij| · ‖X_j‖₂``, the input feature's norm over the calibration
  tokens, compared **within each output row**; the weights are not updated.

N:M keeps the N best scores of every M consecutive inputs of a row. SparseGPT (with its
weight update) is in sparsegpt.py, DSnoT's refinement of a mask in dsnot.py; calibration.py
gathers the inputs and prunes block by block.
"""

from __future__ import annotations

import torch
from torch import Tensor

from spx.kernels.nm import nm_mask


def keep_per_row(score: Tensor, sparsity: float) -> Tensor:
    """Bool mask dropping the ``int(in · sparsity)`` lowest scores of every row.

    >>> keep_per_row(torch.tensor([[3.0, 1.0, 2.0, 4.0]]), 0.5).int().tolist()
    [[1, 0, 0, 1]]
    """
    return drop_per_row(score, int(score.shape[1] * sparsity))


def drop_per_row(score: Tensor, drop: int) -> Tensor:
    """Bool mask dropping the ``drop`` lowest scores of every row."""
    mask = torch.ones_like(score, dtype=torch.bool)
    if drop:
        lowest = torch.topk(score, drop, dim=1, largest=False).indices
        mask.scatter_(1, lowest, False)
    return mask


def keep_in_layer(score: Tensor, sparsity: float) -> Tensor:
    """Bool mask dropping the ``int(numel · sparsity)`` lowest scores of the whole layer."""
    drop = int(score.numel() * sparsity)
    mask = torch.ones(score.numel(), dtype=torch.bool, device=score.device)
    if drop:
        mask[torch.topk(score.flatten(), drop, largest=False).indices] = False
    return mask.view_as(score)


def select(score: Tensor, sparsity: float, nm: tuple[int, int] | None, per_row: bool) -> Tensor:
    """The mask a score asks for: N of every M, else per row or over the layer."""
    if nm is not None:
        return nm_mask(score, *nm)
    return keep_per_row(score, sparsity) if per_row else keep_in_layer(score, sparsity)


def magnitude_mask(weight: Tensor, sparsity: float, nm: tuple[int, int] | None = None) -> Tensor:
    return select(weight.abs(), sparsity, nm, per_row=False)


def wanda_score(weight: Tensor, sq_norm: Tensor) -> Tensor:
    """``|W_ij| · ‖X_j‖₂`` from the per-feature sum of squares of the inputs."""
    return weight.abs() * sq_norm.to(weight.dtype).sqrt().unsqueeze(0)


def wanda_mask(
    weight: Tensor, sq_norm: Tensor, sparsity: float, nm: tuple[int, int] | None = None
) -> Tensor:
    return select(wanda_score(weight, sq_norm), sparsity, nm, per_row=True)
