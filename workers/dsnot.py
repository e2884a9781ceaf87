"""DSnoT (Zhang et al. 2023, "Dynamic Sparse No Training: Training-Free Fine-tuning for
Sparse LLMs"): refine a post-training mask without gradients or weight updates.

For each output row the expected reconstruction error of the sparse row against the dense
one is ``err = Σ_j W_j · (1 − m_j) · E[X_j]``. One cycle, in every row still active:

- **grow** the pruned weight whose contribution ``W_j · E[X_j]`` has the sign of ``err``
  (reviving it moves the error towards zero) and is largest relative to its input's
  variance ``Var[X_j]`` (a stable input makes the expected value a good guide);
- **prune** the kept weight with the smallest Wanda score ``|W_k| · ‖X_k‖₂`` among those
  whose removal leaves the error smaller than where the cycle started and of the sign the
  row started with (a swap never overshoots; under N:M, in the grown weight's group of M,
  so every group keeps N).

A row stops for good at its first cycle without such a swap, or once ``|err|`` is at most
``threshold``; the layer after ``cycles`` cycles. The number of kept weights per row (per
group under N:M) never changes. Rows whose error is already small are left alone, and a
small model's rows, with few inputs each, should get few cycles: a swap changes a larger
share of such a row.
"""

from __future__ import annotations

import torch
from torch import Tensor

from spx.workers.calibration import InputStats
from spx.workers.posttrain import wanda_score


@torch.no_grad()
def dsnot_refine(
    weight: Tensor,
    keep: Tensor,
    stats: InputStats,
    cycles: int = 50,
    nm: tuple[int, int] | None = None,
    threshold: float = 0.1,
) -> Tensor:
    """A refined copy of the bool ``keep`` mask of ``weight`` (out x in)."""
    W = weight.detach().to(torch.float64)
    keep = keep.clone()
    contrib = W * stats.mean.to(W).unsqueeze(0)
    grow_score = contrib.abs() / (stats.var.to(W).unsqueeze(0) + 1e-12)
    prune_score = wanda_score(W, stats.sq_norm.to(W))
    err = (contrib * ~keep).sum(1)
    start_sign = err.sign()
    active = torch.ones_like(err, dtype=torch.bool)
    rows = torch.arange(W.shape[0], device=W.device)
    columns = torch.arange(W.shape[1], device=W.device)
    for _ in range(cycles):
        active &= err.abs() > threshold
        if not bool(active.any()):
            break
        can_grow = ~keep & (contrib * err.sign().unsqueeze(1) > 0)
        g = torch.where(can_grow, grow_score, -torch.inf)
        grow = g.argmax(1)
        after = err.unsqueeze(1) - contrib[rows, grow].unsqueeze(1) + contrib
        can_prune = keep & (after.abs() < err.abs().unsqueeze(1))
        can_prune &= after.sign() == start_sign.unsqueeze(1)
        if nm is not None:
            can_prune &= columns.unsqueeze(0) // nm[1] == (grow // nm[1]).unsqueeze(1)
        p = torch.where(can_prune, prune_score, torch.inf)
        cut = p.argmin(1)
        swap = active & torch.isfinite(g.max(1).values) & torch.isfinite(p.min(1).values)
        active &= swap
        if not bool(swap.any()):
            break
        r = rows[swap]
        keep[r, grow[swap]] = True
        keep[r, cut[swap]] = False
        err[swap] = after[r, cut[swap]]
    return keep
