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
from pydantic import Field, field_validator
from torch import Tensor, nn

from spx.errors import ConfigError
from spx.kernels.nm import nm_mask, parse_nm
from spx.workers.knobs import FieldError, MethodKnobs, PruneSettings, TrialView, read_knobs
from spx.workers.masks import prunable_weights
from spx.workers.pruner import Pruner
from spx.workers.schedules import Constant, Schedule


def group_dim(weight: Tensor) -> int:
    """The size of the dimension N:M groups run along (C_in for conv, ``in`` for Linear)."""
    return weight.shape[1] if weight.dim() >= 2 else weight.shape[0]


class NM(Pruner):
    """N of every M weights along the input dimension, trained with SR-STE."""

    name = "nm"
    regrows = True
    needs_gradients = False
    follows_schedule = False
    masks_at_step0 = True
    zero_stages = (0,)  # steps the dense weights through .grad itself
    example = {"prune.nm": "2:4"}

    class Knobs(MethodKnobs):
        nm: str = Field("2:4", description="keep N of every M weights along the input dim")
        srste_decay: float = Field(2e-4, ge=0, le=1, description="SR-STE decay on pruned weights")

        @field_validator("nm")
        @classmethod
        def _parses(cls, nm: str) -> str:
            parse_nm(nm)  # its ValueError says what is wrong
            return nm

    knobs: Knobs

    def __init__(self, cfg: PruneSettings, model: nn.Module, steps: int, seed: int = 0):
        super().__init__(cfg, model, steps, seed)
        self.n, self.m = parse_nm(self.knobs.nm)
        self.dense = {name: w.detach().clone() for name, w in self.weights.items()}

    @classmethod
    def check(cls, cfg: TrialView) -> None:
        nm, sparsity = read_knobs(cls.Knobs, cfg.prune).nm, cfg.prune.sparsity
        n, m = parse_nm(nm)
        if sparsity not in (0.0, 1 - n / m):
            raise FieldError(
                f"nm sets its own sparsity (1 - N/M = {1 - n / m:g} for {nm}); "
                "leave prune.sparsity at 0",
                "prune.sparsity",
                sparsity,
            )

    def build_schedule(self, cfg: PruneSettings, steps: int) -> Schedule:
        n, m = parse_nm(self.knobs.nm)
        return Constant(1 - n / m)

    def scores(self, weight: Tensor, grad: Tensor | None) -> Tensor:
        return weight.detach().abs()

    @classmethod
    def validate(cls, cfg: TrialView, model: nn.Module) -> None:
        nm = read_knobs(cls.Knobs, cfg.prune).nm
        _, m = parse_nm(nm)
        for name, weight in prunable_weights(model, cfg.prune.embeddings).items():
            if group_dim(weight) % m:
                raise ConfigError(
                    f"M must divide every layer's input size, and {name} "
                    f"{tuple(weight.shape)} has {group_dim(weight)} inputs",
                    field="prune.nm",
                    value=nm,
                )

    def before_step(self, step: int, optimizer: torch.optim.Optimizer) -> bool:
        if step != 0:
            return False
        self._remask()
        return True

    @torch.no_grad()
    def after_backward(self, step: int, optimizer: torch.optim.Optimizer) -> bool:
        for name, weight in self.weights.items():
            dense = self.dense[name]
            if weight.grad is not None:
                pruned = dense * ~self.masks.masks[name]
                weight.grad.add_(pruned, alpha=self.knobs.srste_decay)
            weight.copy_(dense)  # the optimizer steps the dense weights
        return False

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
