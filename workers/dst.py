"""Dynamic sparse training: RigL and SET (ALGORITHMS.md §8b, §8c).

Masks start random at ``prune.sparsity`` (layer densities from ``prune.distribution``,
§8a) and every layer keeps its nonzero count for the whole run. Every
``prune.update_every`` steps while t < T_end (``prune.update_end`` of ``train.steps``),
each layer:

- drops the n = ⌊f(t) · nnz⌋ active weights of least |w| (plus N(0, 1e-5) tie-break
  noise), with the cosine drop fraction f(t) = α/2 · (1 + cos(π t / T_end)) on the global
  step t, α = ``prune.drop_fraction``;
- grows n among the inactive positions, the just-dropped included: those of largest dense
  gradient |∂L/∂w| (RigL) or uniformly at random (SET, from the mask RNG stream).

A grown weight starts at zero with zeroed optimizer state; a dropped weight grown straight
back keeps its value and state. The update runs in ``after_backward`` of its step, when
the dense gradient of the current batch (masked forward, unmasked gradient) is in
``.grad``; that step's optimizer update then runs under the new mask.

>>> Regrowth(alpha=0.3, every=100, end=750).fraction(0), Regrowth(0.3, 100, 750).fraction(750)
(0.3, 0.0)
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from pydantic import Field
from torch import Tensor, nn

from spx.workers.knobs import MethodKnobs, PruneSettings
from spx.workers.masks import keep_top
from spx.workers.pruner import Pruner, mask_optimizer_state

TIE_NOISE = 1e-5


@dataclass(frozen=True)
class Regrowth:
    """When masks are redrawn and what fraction of each layer's weights moves."""

    alpha: float
    every: int
    end: int

    def should_update(self, step: int) -> bool:
        return 0 < step < self.end and step % self.every == 0

    def fraction(self, step: int) -> float:
        return self.alpha / 2 * (1 + math.cos(math.pi * min(step, self.end) / self.end))


class DynamicSparse(Pruner):
    """Shared drop-and-grow loop; subclasses say how inactive weights score for growing."""

    regrows = True
    follows_schedule = False
    masks_at_step0 = True
    zero_stages = (0,)  # regrowth edits optimizer state
    example = {"prune.sparsity": 0.75, "prune.update_every": 4}

    class Knobs(MethodKnobs):
        update_every: int = Field(100, ge=1, description="steps between mask updates")
        drop_fraction: float = Field(0.3, ge=0, le=1, description="initial drop fraction")
        update_end: float = Field(0.75, ge=0, le=1, description="last update, of train.steps")

    knobs: Knobs

    def __init__(self, cfg: PruneSettings, model: nn.Module, steps: int, seed: int = 0):
        super().__init__(cfg, model, steps, seed)
        k = self.knobs
        end = max(round(k.update_end * steps), 1)
        self.regrowth = Regrowth(k.drop_fraction, k.update_every, end)

    def scores(self, weight: Tensor, grad: Tensor | None) -> Tensor:
        """The initial mask is random within each layer."""
        return torch.rand(weight.shape, generator=self.generator).to(weight.device)

    def grow_scores(self, weight: Tensor, grad: Tensor | None) -> Tensor:
        raise NotImplementedError

    def after_backward(self, step: int, optimizer: torch.optim.Optimizer) -> bool:
        regrows = self.regrowth.should_update(step)
        if regrows:
            self.regrow(self.regrowth.fraction(step), optimizer)
        self.mask_grads()
        return regrows

    @torch.no_grad()
    def regrow(self, fraction: float, optimizer: torch.optim.Optimizer) -> None:
        stayed: dict[str, Tensor] = {}
        for name, weight in self.weights.items():
            old = self.masks.masks[name]
            new = self._drop_and_grow(weight, old, fraction)
            self.masks.masks[name] = new
            stayed[name] = (old & new).to(weight.dtype)
            weight.mul_(new)
        mask_optimizer_state(optimizer, self.weights, stayed)

    def _drop_and_grow(self, weight: Tensor, old: Tensor, fraction: float) -> Tensor:
        active = int(old.sum())
        moved = math.floor(fraction * active)
        if moved == 0:
            return old
        noise = torch.randn(weight.shape, generator=self.generator).to(weight.device)
        magnitude = weight.detach().abs().float() + TIE_NOISE * noise
        kept = keep_top(magnitude.masked_fill(~old, -math.inf), active - moved)
        grow = self.grow_scores(weight, weight.grad).float().masked_fill(kept, -math.inf)
        return kept | keep_top(grow, moved)


class RigL(DynamicSparse):
    """RigL: random sparse at init; drop the least |w|, grow where |gradient| is largest."""

    name = "rigl"

    def grow_scores(self, weight: Tensor, grad: Tensor | None) -> Tensor:
        return grad.abs() if grad is not None else torch.zeros_like(weight)


class SET(DynamicSparse):
    """SET: random sparse at init; drop the least |w|, grow uniformly at random."""

    name = "set"
    needs_gradients = False

    def grow_scores(self, weight: Tensor, grad: Tensor | None) -> Tensor:
        return torch.rand(weight.shape, generator=self.generator).to(weight.device)
