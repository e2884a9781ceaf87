"""The shared pruning machinery every sparsity method builds on (ALGORITHMS.md §5, §6 and
the cross-cutting notes).

A method is a subclass of :class:`Pruner` that overrides one scoring hook, ``scores``
(higher = more worth keeping). The base turns scores into exact per-layer masks at the
sparsity its schedule asks for (layer densities from ``prune.distribution``), keeps masks
monotone, and holds pruned weights and their optimizer state at zero. Methods that need
more override the loop hooks, which the one training loop calls for every method:

- ``before_step(step, optimizer) -> bool``: before the forward pass; masks may change
  (True when this is a mask-update step, so the loop reports the realised schedule).
- ``after_backward(step, optimizer)``: the dense gradient of the batch is in ``.grad``
  (RigL reads it here); the default then masks it.
- ``after_step()``: after ``optimizer.step()``; the default re-applies the masks.
- ``total_steps`` and ``position(step)``: how many steps the trial trains and where each
  sits in the LR schedule (a lottery trains its rounds past ``train.steps``).
- ``state_dict()`` / ``load_state_dict()``: everything to resume exactly (masks, the mask
  RNG stream, method state), as tensors plus a JSON-safe dict.

``step`` counts optimizer steps already taken, so a mask update at step 0 is "at init".

>>> import torch
>>> from spx.workers.config import PruneConfig
>>> class Largest(Pruner):
...     name = "largest"
...     def scores(self, weight, grad):
...         return weight.detach().abs()
>>> model = torch.nn.Linear(4, 2, bias=False)
>>> cfg = PruneConfig(sparsity=0.5, schedule={"kind": "one-shot", "start": 0.0, "end": 0.0})
>>> pruner = Largest(cfg, model, steps=10)
>>> pruner.before_step(0, torch.optim.SGD(model.parameters(), lr=0.1)), pruner.masks.nnz()
(True, 4)
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from spx.workers.allocation import keep_counts
from spx.workers.config import PruneConfig, TrialConfig
from spx.workers.masks import MaskSet, keep_top, prunable_weights
from spx.workers.schedules import Schedule, build_schedule

MASK_STREAM = 0x6D61736B  # offsets the mask RNG's seed from the weight-init and data seeds


class Pruner:
    """Base class of every sparsity method (see the module docstring for the hooks)."""

    name: ClassVar[str]
    prunes: ClassVar[bool] = True
    regrows: ClassVar[bool] = False  # masks may regain weights by design (rigl, set, nm)

    def __init__(self, cfg: PruneConfig, model: nn.Module, steps: int, seed: int = 0):
        self.cfg = cfg
        self.steps = steps
        self.masks = MaskSet(prunable_weights(model, embeddings=cfg.embeddings))
        self.exempt = self.dense_layers(model)
        self.schedule = self.build_schedule(cfg, steps)
        # Its own stream: random masks never shift weight init or data order across methods.
        self.generator = torch.Generator().manual_seed(seed + MASK_STREAM)

    @property
    def weights(self) -> dict[str, nn.Parameter]:
        return self.masks.weights

    # -- what a method overrides --------------------------------------------------------

    def scores(self, weight: Tensor, grad: Tensor | None) -> Tensor:
        """How much each weight is worth keeping (the one scoring hook)."""
        raise NotImplementedError

    def build_schedule(self, cfg: PruneConfig, steps: int) -> Schedule:
        return build_schedule(cfg.schedule, cfg.sparsity, steps)

    def dense_layers(self, model: nn.Module) -> set[str]:
        """Prunable weights this method leaves dense (outside the sparsity target)."""
        return set()

    @classmethod
    def validate(cls, cfg: TrialConfig, model: nn.Module) -> None:
        """Raise ConfigError for a config this method cannot run on ``model`` (meta tensors)."""

    @property
    def total_steps(self) -> int:
        return self.steps

    def position(self, step: int) -> int:
        return step

    # -- loop hooks ---------------------------------------------------------------------

    def before_step(self, step: int, optimizer: torch.optim.Optimizer) -> bool:
        """Update masks if the schedule says so; True when this is a mask-update step."""
        if not self.prunes or not self.schedule.should_update(step):
            return False
        self.prune_to(self.schedule.sparsity_at(step))
        self.masks.apply()
        mask_optimizer_state(optimizer, self.weights, self.masks.multipliers())
        return True

    def after_backward(self, step: int, optimizer: torch.optim.Optimizer) -> None:
        self.mask_grads()

    def after_step(self) -> None:
        if self.prunes:
            self.masks.apply()

    @torch.no_grad()
    def mask_grads(self) -> None:
        """Pruned weights get no gradient, so optimizer moments stay zero for them."""
        if not self.prunes:
            return
        for name, weight in self.weights.items():
            if weight.grad is not None:
                weight.grad.mul_(self.masks.multiplier(name))

    # -- shared mask making -------------------------------------------------------------

    @torch.no_grad()
    def prune_to(self, target: float) -> None:
        """Masks at ``target`` sparsity; pruned weights score below all others (monotone)."""
        scores: dict[str, Tensor] = {}
        for name, weight in self.weights.items():
            if name not in self.exempt:
                score = self.scores(weight, weight.grad).float()
                scores[name] = score.masked_fill(~self.masks.masks[name], -math.inf)
        keep = self.keep_counts(scores, target)
        nnz = self.masks.layer_nnz()
        for name, score in scores.items():
            self.masks.masks[name] = self.select(score, min(keep[name], nnz[name]))

    def keep_counts(self, scores: dict[str, Tensor], target: float) -> dict[str, int]:
        """How many weights each layer keeps at ``target`` (layer-wise: the distribution)."""
        shapes = {name: tuple(s.shape) for name, s in scores.items()}
        return keep_counts(shapes, target, self.cfg.distribution)

    def select(self, scores: Tensor, keep: int) -> Tensor:
        """The mask of one layer keeping ``keep`` weights by ``scores``."""
        return keep_top(scores, keep)

    def min_layer(self) -> int:
        """N_min of the §10 rule: ``prune.min_layer_fraction`` of all prunable weights."""
        return math.floor(self.masks.numel() * self.cfg.min_layer_fraction)

    # -- checkpoints --------------------------------------------------------------------

    def state_dict(self) -> tuple[dict[str, Tensor], dict[str, Any]]:
        tensors = {f"mask/{name}": mask for name, mask in self.masks.masks.items()}
        tensors["rng/mask"] = self.generator.get_state()
        return tensors, {}

    def load_state_dict(self, tensors: dict[str, Tensor], meta: dict[str, Any]) -> None:
        for name in self.masks.masks:
            self.masks.masks[name] = tensors[f"mask/{name}"].bool()
        self.generator.set_state(tensors["rng/mask"])


@torch.no_grad()
def mask_optimizer_state(
    optimizer: torch.optim.Optimizer, weights: dict[str, nn.Parameter], keep: dict[str, Tensor]
) -> None:
    """Zero every per-weight optimizer slot (momentum, Adam moments) where ``keep`` is False,
    so a pruned or newly grown weight has no history to move with."""
    for name, weight in weights.items():
        state = optimizer.state.get(weight, {})
        for value in state.values():
            if torch.is_tensor(value) and value.shape == weight.shape:
                value.mul_(keep[name])
