"""Counting what a sparse model costs: nonzero parameters, their running average, FLOPs,
tokens and training compute.

Conventions (ARCHITECTURE.md metric vocabulary, ALGORITHMS.md §5):
- ``model/nnz``: nonzero prunable weights (by mask), each tensor once.
- ``model/params``: N_t = nonzero prunable weights + every non-prunable parameter, each
  tensor once (a head tied to the token embedding is one tensor).
- ``model/params_avg``: N_avg = mean of N_t over the optimizer steps taken so far (one N_t
  per step, after that step's mask update), so dense runs report their constant count.
- ``model/flops``: forward multiply-adds (MACs, not FLOPs) per example in Linear/Conv layers,
  counting only unmasked weights and every use of a weight (code-gpt's tied head is a
  matmul, its embedding lookup none). For code-gpt one example is one sequence of
  ``model.context`` bytes; for the digits tasks one image.
- ``model/flops_per_token``: forward FLOPs per token, 2 x ``model/flops`` / tokens per
  example (a digits image is one token).
- ``data/tokens``: tokens trained on so far by all workers of the trial together
  (steps x ``train.batch_size`` x tokens per example x workers).
- ``compute/train_flops``: training compute so far, C = sum over steps of
  3 x ``model/flops_per_token`` (at that step's masks) x the step's tokens: the backward
  pass costs twice the forward (Kaplan et al. 2020, arXiv 2001.08361), so a dense GPT gets
  C ~ 6 N D. Attention's score and value products, norms and the loss are not counted.

>>> from torch import nn
>>> model = nn.Sequential(nn.Linear(4, 3, bias=False), nn.Linear(3, 2, bias=False))
>>> masks = MaskSet({"0.weight": model[0].weight, "1.weight": model[1].weight})
>>> acct = Accountant.build(model, masks, torch.zeros(1, 4), tokens_per_step=8)
>>> acct.record_step()
>>> m = acct.metrics()
>>> m["model/flops"], m["model/flops_per_token"], m["data/tokens"], m["compute/train_flops"]
(18.0, 36.0, 8.0, 864.0)
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from spx.workers.masks import MaskSet, mask_names

_COUNTED = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)
BACKWARD_FACTOR = 3
"""Training FLOPs per forward FLOP: the forward pass, plus a backward pass of about twice
its cost (gradients with respect to activations and to weights)."""


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
    """Tracks N_t, its running average, FLOPs, tokens and compute as masks change."""

    total_params: int
    masks: MaskSet
    positions: dict[str, int]
    weight_sizes: dict[str, int]
    mask_of: dict[str, str]
    """Each counted module's weight -> the name of its mask (tied modules share one)."""
    tokens_per_example: float = 1.0
    tokens_per_step: int = 0
    """Tokens one optimizer step trains on, summed over the trial's workers."""
    params_sum: float = 0.0
    steps: int = 0
    train_flops: float = 0.0

    @classmethod
    def build(
        cls,
        model: nn.Module,
        masks: MaskSet,
        example: Tensor,
        tokens_per_example: float = 1.0,
        tokens_per_step: int = 0,
    ) -> Accountant:
        """Count ``model`` (``example``: a batch of one) under ``masks``."""
        total = sum(p.numel() for p in model.parameters())  # shared tensors once
        sizes = {
            f"{n}.weight": m.weight.numel()
            for n, m in model.named_modules()
            if isinstance(m, _COUNTED)
        }
        positions = positions_per_example(model, example)
        names = mask_names(model, masks.weights)
        return cls(total, masks, positions, sizes, names, tokens_per_example, tokens_per_step)

    def params_now(self) -> int:
        return self.total_params - self.masks.numel() + self.masks.nnz()

    def record_step(self) -> None:
        """Count one optimizer step, after its mask update."""
        self.params_sum += self.params_now()
        self.steps += 1
        self.train_flops += BACKWARD_FACTOR * self.flops_per_token() * self.tokens_per_step

    def flops(self) -> int:
        """Forward multiply-adds per example at the current masks."""
        nnz = self.masks.layer_nnz()
        return sum(
            (nnz[self.mask_of[k]] if k in self.mask_of else size) * self.positions.get(k, 0)
            for k, size in self.weight_sizes.items()
        )

    def flops_per_token(self) -> float:
        """Forward FLOPs (two per multiply-add) per token at the current masks."""
        return 2 * self.flops() / self.tokens_per_example

    def tokens(self) -> int:
        return self.steps * self.tokens_per_step

    def metrics(self) -> dict[str, float]:
        now = self.params_now()
        return {
            "model/sparsity": self.masks.sparsity(),
            "model/nnz": float(self.masks.nnz()),
            "model/params": float(now),
            "model/params_avg": self.params_sum / self.steps if self.steps else float(now),
            "model/flops": float(self.flops()),
            "model/flops_per_token": self.flops_per_token(),
            "model/collapsed_layers": float(self.masks.collapsed()),
            "data/tokens": float(self.tokens()),
            "compute/train_flops": self.train_flops,
        }
