"""N:M fine-grained structured sparsity trained with SR-STE (ALGORITHMS.md §7).

In every group of M consecutive weights along the input dimension (Linear ``[out, in]``
rows; conv weights grouped along C_in, as in ``Sparse_NHWC``), keep the N largest |w|.
The mask is recomputed from dense weights W after every optimizer step, so it is fresh for
every forward pass, which runs on W̃ = W ⊙ M(W). The backward is the straight-through
estimator plus the sparse-refined decay on the pruned weights only:

    W ← W − γ (∂L/∂W̃ + λ_W (1 − M) ⊙ W),   λ_W = ``prune.srste_decay`` (2e-4)

How that plugs into the one loop: the module parameters hold W̃ (what the forward pass,
evaluation, accounting and checkpoints see) and this pruner holds the dense W.
``after_backward`` adds the decay term to ``∂L/∂W̃`` and swaps W into the parameters, the
optimizer steps W (its state stays dense: SR-STE keeps every weight alive), and
``after_step`` stores W, recomputes M and puts W̃ back. ``model/flops`` counts N/M of each
layer's multiply-adds because the masks hold exactly N of every M.

The group size M must divide every prunable layer's input dimension; :meth:`NM.validate`
checks that when the sweep is validated, before any trial runs.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from spx.errors import ConfigError
from spx.kernels.nm import nm_mask, parse_nm
from spx.workers.config import PruneConfig, TrialConfig
from spx.workers.masks import prunable_weights
from spx.workers.pruner import Pruner
from spx.workers.schedules import Constant, Schedule


def group_dim(weight: Tensor) -> int:
    """The size of the dimension N:M groups run along (C_in for conv, ``in`` for Linear)."""
    return weight.shape[1] if weight.dim() >= 2 else weight.shape[0]


class NM(Pruner):
    """``nm``: N of every M weights along the input dimension, trained with SR-STE."""

    name = "nm"
    regrows = True

    def __init__(self, cfg: PruneConfig, model: nn.Module, steps: int, seed: int = 0):
        super().__init__(cfg, model, steps, seed)
        self.n, self.m = parse_nm(cfg.nm)
        self.dense = {name: w.detach().clone() for name, w in self.weights.items()}

    def build_schedule(self, cfg: PruneConfig, steps: int) -> Schedule:
        n, m = parse_nm(cfg.nm)
        return Constant(1 - n / m)

    def scores(self, weight: Tensor, grad: Tensor | None) -> Tensor:
        return weight.detach().abs()

    @classmethod
    def validate(cls, cfg: TrialConfig, model: nn.Module) -> None:
        _, m = parse_nm(cfg.prune.nm)
        for name, weight in prunable_weights(model, cfg.prune.embeddings).items():
            if group_dim(weight) % m:
                raise ConfigError(
                    f"M must divide every layer's input size, and {name} "
                    f"{tuple(weight.shape)} has {group_dim(weight)} inputs",
                    field="prune.nm",
                    value=cfg.prune.nm,
                )

    def before_step(self, step: int, optimizer: torch.optim.Optimizer) -> bool:
        if step != 0:
            return False
        self._remask()
        return True

    @torch.no_grad()
    def after_backward(self, step: int, optimizer: torch.optim.Optimizer) -> None:
        for name, weight in self.weights.items():
            dense = self.dense[name]
            if weight.grad is not None:
                pruned = dense * ~self.masks.masks[name]
                weight.grad.add_(pruned, alpha=self.cfg.srste_decay)
            weight.copy_(dense)  # the optimizer steps the dense weights

    @torch.no_grad()
    def after_step(self) -> None:
        for name, weight in self.weights.items():
            self.dense[name].copy_(weight)
        self._remask()

    @torch.no_grad()
    def _remask(self) -> None:
        for name, weight in self.weights.items():
            mask = nm_mask(self.dense[name], self.n, self.m)
            self.masks.masks[name] = mask
            weight.copy_(self.dense[name] * mask)

    def state_dict(self) -> tuple[dict[str, Tensor], dict[str, Any]]:
        tensors, meta = super().state_dict()
        tensors.update({f"dense/{name}": w for name, w in self.dense.items()})
        return tensors, meta

    def load_state_dict(self, tensors: dict[str, Tensor], meta: dict[str, Any]) -> None:
        super().load_state_dict(tensors, meta)
        for name, dense in self.dense.items():
            dense.copy_(tensors[f"dense/{name}"])
