"""Counting what a sparse model costs: nonzero parameters, their running average, FLOPs.

Conventions (ARCHITECTURE.md metric vocabulary, ALGORITHMS.md §5):
- ``model/nnz``: nonzero prunable weights (by mask).
- ``model/params``: N_t = nonzero prunable weights + every non-prunable parameter.
- ``model/params_avg``: N_avg = mean of N_t over the optimizer steps taken so far (one N_t
  per step, after that step's mask update), so dense runs report their constant count.
- ``model/flops``: multiply-adds per example in Linear/Conv layers, counting only unmasked
  weights. For code-gpt one example is one sequence of ``model.context`` bytes.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from spx.workers.masks import MaskSet

_COUNTED = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)


def positions_per_example(model: nn.Module, example: Tensor) -> dict[str, int]:
    """How many times each Linear/Conv weight is applied for one example (weight name)."""
    seen: dict[str, int] = {}
    hooks = []
    for name, module in model.named_modules():
        if isinstance(module, _COUNTED):
            key = f"{name}.weight"

            def hook(mod: nn.Module, _inp: tuple, out: Tensor, key: str = key) -> None:
                channels = out.shape[-1] if isinstance(mod, nn.Linear) else out.shape[1]
                seen[key] = seen.get(key, 0) + out.numel() // channels

            hooks.append(module.register_forward_hook(hook))
    try:
        with torch.no_grad():
            model(example)
    finally:
        for h in hooks:
            h.remove()
    return seen


@dataclass
class Accountant:
    """Tracks N_t, its running average and FLOPs as masks change."""

    total_params: int
    masks: MaskSet
    positions: dict[str, int]
    weight_sizes: dict[str, int]
    params_sum: float = 0.0
    steps: int = 0

    @classmethod
    def build(cls, model: nn.Module, masks: MaskSet, example: Tensor) -> Accountant:
        total = sum(p.numel() for p in model.parameters())
        sizes = {
            f"{n}.weight": m.weight.numel()
            for n, m in model.named_modules()
            if isinstance(m, _COUNTED)
        }
        return cls(total, masks, positions_per_example(model, example), sizes)

    def params_now(self) -> int:
        return self.total_params - self.masks.numel() + self.masks.nnz()

    def record_step(self) -> None:
        self.params_sum += self.params_now()
        self.steps += 1

    def flops(self) -> int:
        nnz = self.masks.layer_nnz()
        return sum(
            nnz.get(k, size) * self.positions.get(k, 0) for k, size in self.weight_sizes.items()
        )

    def metrics(self) -> dict[str, float]:
        now = self.params_now()
        return {
            "model/sparsity": self.masks.sparsity(),
            "model/nnz": float(self.masks.nnz()),
            "model/params": float(now),
            "model/params_avg": self.params_sum / self.steps if self.steps else float(now),
            "model/flops": float(self.flops()),
            "model/collapsed_layers": float(self.masks.collapsed()),
        }
