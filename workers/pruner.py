"""The shared pruning machinery: schedule → scores → exact masks → weights and optimizer.

One pruner per trial. It owns the masks; the loop calls :meth:`Pruner.before_step` before a
forward pass and :meth:`Pruner.after_step` after every optimizer step, so a pruned weight
can never come back through momentum or weight decay.
"""

from __future__ import annotations

import torch
from torch import nn

from spx.workers.config import PruneConfig
from spx.workers.masks import MaskSet, keep_top, prunable_weights
from spx.workers.methods import Method, build_method
from spx.workers.schedules import Schedule, build_schedule


class Pruner:
    def __init__(self, method: Method, schedule: Schedule, masks: MaskSet):
        self.method = method
        self.schedule = schedule
        self.masks = masks

    @classmethod
    def build(cls, cfg: PruneConfig, model: nn.Module, total_steps: int) -> Pruner:
        weights = prunable_weights(model, embeddings=cfg.embeddings)
        schedule = build_schedule(cfg.schedule, cfg.sparsity, total_steps)
        return cls(build_method(cfg.method), schedule, MaskSet(weights))

    def before_step(self, step: int, optimizer: torch.optim.Optimizer) -> bool:
        """Update masks if the schedule says so; True when they changed."""
        if not self.method.prunes or not self.schedule.should_update(step):
            return False
        target = self.schedule.sparsity_at(step)
        self._prune_layerwise(target)
        self.masks.apply()
        _zero_optimizer_state(optimizer, self.masks)
        return True

    @torch.no_grad()
    def mask_grads(self) -> None:
        """Pruned weights get no gradient, so optimizer moments stay zero for them."""
        if not self.method.prunes:
            return
        for name, weight in self.masks.weights.items():
            if weight.grad is not None:
                weight.grad.mul_(self.masks.masks[name])

    def after_step(self) -> None:
        if self.method.prunes:
            self.masks.apply()

    @torch.no_grad()
    def _prune_layerwise(self, target: float) -> None:
        for name, weight in self.masks.weights.items():
            old = self.masks.masks[name]
            scores = self.method.scores(weight, weight.grad).float()
            # Already-pruned weights score below everything else: masks stay monotone.
            scores = torch.where(old, scores, torch.full_like(scores, -1.0))
            keep = weight.numel() - round(target * weight.numel())
            self.masks.masks[name] = keep_top(scores, min(keep, int(old.sum())))


@torch.no_grad()
def _zero_optimizer_state(optimizer: torch.optim.Optimizer, masks: MaskSet) -> None:
    """Pruned weights keep no momentum or second moment to come back with."""
    for name, weight in masks.weights.items():
        state = optimizer.state.get(weight, {})
        for value in state.values():
            if torch.is_tensor(value) and value.shape == weight.shape:
                value.mul_(masks.masks[name])
