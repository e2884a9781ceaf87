"""Masks: one boolean tensor per prunable weight, and what follows from them.

Prunable by default: the ``.weight`` of every Linear and Conv layer; embedding tables only
when asked (and never a weight tied to an embedding unless asked). Never biases or norms.
(ALGORITHMS.md, cross-cutting notes.)

>>> import torch
>>> keep_top(torch.tensor([[0.1, -3.0], [2.0, 0.5]]).abs(), keep=2).int().tolist()
[[0, 1], [1, 0]]
"""

from __future__ import annotations

import torch
from torch import nn

_PRUNABLE = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)


def prunable_weights(model: nn.Module, embeddings: bool = False) -> dict[str, nn.Parameter]:
    """Name -> weight of every prunable layer, in module order."""
    tied = set()
    if not embeddings:
        tied = {id(m.weight) for m in model.modules() if isinstance(m, nn.Embedding)}
    kinds = _PRUNABLE + ((nn.Embedding,) if embeddings else ())
    out: dict[str, nn.Parameter] = {}
    for name, module in model.named_modules():
        weight = getattr(module, "weight", None)
        if isinstance(module, kinds) and weight is not None and id(weight) not in tied:
            out[f"{name}.weight" if name else "weight"] = weight
    return out


def keep_top(scores: torch.Tensor, keep: int) -> torch.Tensor:
    """Boolean mask keeping exactly ``keep`` entries with the largest scores."""
    mask = torch.zeros(scores.numel(), dtype=torch.bool, device=scores.device)
    if keep > 0:
        mask[torch.topk(scores.flatten(), keep, sorted=False).indices] = True
    return mask.view_as(scores)


class MaskSet:
    """The current masks of a model's prunable weights."""

    def __init__(self, weights: dict[str, nn.Parameter]):
        self.weights = weights
        self.masks = {n: torch.ones_like(w, dtype=torch.bool) for n, w in weights.items()}

    @torch.no_grad()
    def apply(self) -> None:
        """Zero every pruned weight (after each optimizer step)."""
        for name, weight in self.weights.items():
            weight.mul_(self.masks[name])

    def nnz(self) -> int:
        return int(sum(int(m.sum()) for m in self.masks.values()))

    def numel(self) -> int:
        return sum(m.numel() for m in self.masks.values())

    def sparsity(self) -> float:
        total = self.numel()
        return 1.0 - self.nnz() / total if total else 0.0

    def layer_nnz(self) -> dict[str, int]:
        return {n: int(m.sum()) for n, m in self.masks.items()}

    def density(self) -> dict[str, float]:
        return {n: float(m.float().mean()) for n, m in self.masks.items()}

    def collapsed(self) -> int:
        """How many layers have no weights left."""
        return sum(1 for m in self.masks.values() if not bool(m.any()))
