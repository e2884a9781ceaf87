"""Lottery tickets: iterative magnitude pruning with weight rewinding (ALGORITHMS.md §9).

Following open_lth: round 0 trains dense from step 0 to T = ``train.steps`` and saves θ_k
(every parameter and buffer) at step k = ``prune.rewind_step``. Each round r = 1..L then

1. prunes the remaining weights with the least |θ_T| (the weights as training left them,
   not |θ_k|), globally across all prunable layers, down to the round's sparsity;
2. rewinds every parameter and buffer to θ_k, masked (k = 0 is the original reset-to-init);
3. clears the optimizer state (fresh momentum) and trains from schedule position k to T,
   so a ``train.lr_schedule`` resumes at k instead of restarting.

Round targets: round l reaches 1 − (1 − p)^l with p = ``prune.rate`` (p of the
*remaining* weights per round). L is ``prune.rounds``, or when that is 0 the fewest rounds
that reach ``prune.sparsity`` at rate p; the last round lands exactly on
``prune.sparsity`` (or on 1 − (1 − p)^L when ``prune.sparsity`` is 0).

Steps: the trial's step counter runs on across rounds, T + L·(T − k) optimizer steps in
all, so reports carry increasing steps and ``data/tokens`` and ``model/params_avg`` count
every step trained; a lottery trial costs about L + 1 dense runs. ``position(step)`` maps a
step back to its place in the LR schedule.

Global pruning uses the §10 minimum-per-layer rule (``prune.min_layer_fraction``) so the
output layer cannot collapse; set it to 0 for open_lth's plain global pruning.

>>> [round(s, 4) for s in round_targets(0.5, 0.2, 0)]
[0.2, 0.36, 0.488, 0.5]
>>> r = Rounds(targets=(0.2, 0.36), length=100, rewind=10)
>>> r.total, [t for t in range(r.total) if r.should_update(t)], r.position(100), r.position(189)
(280, [100, 190], 10, 99)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from pydantic import Field
from torch import Tensor, nn

from spx.workers.allocation import global_keep
from spx.workers.knobs import (
    FieldError,
    MethodKnobs,
    PruneSettings,
    TrialView,
    before_end,
    read_knobs,
)
from spx.workers.pruner import Pruner
from spx.workers.schedules import Schedule


def round_targets(sparsity: float, rate: float, rounds: int) -> list[float]:
    """The sparsity after each pruning round (see the module docstring)."""
    if rounds == 0:
        if sparsity <= 0:
            return []
        rounds = max(1, math.ceil(math.log(1 - sparsity) / math.log(1 - rate) - 1e-9))
    targets = [1 - (1 - rate) ** level for level in range(1, rounds + 1)]
    if sparsity > 0:
        targets[-1] = sparsity
    return targets


@dataclass(frozen=True)
class Rounds:
    """The lottery's schedule: round r ≥ 1 starts at step T + (r − 1)(T − k)."""

    targets: tuple[float, ...]
    length: int
    rewind: int

    @property
    def final(self) -> float:
        return self.targets[-1] if self.targets else 0.0

    @property
    def total(self) -> int:
        return self.length + len(self.targets) * (self.length - self.rewind)

    def round_at(self, step: int) -> int:
        if step < self.length:
            return 0
        return min(1 + (step - self.length) // (self.length - self.rewind), len(self.targets))

    def sparsity_at(self, step: int) -> float:
        level = self.round_at(step)
        return self.targets[level - 1] if level else 0.0

    def should_update(self, step: int) -> bool:
        since = step - self.length
        return since >= 0 and step < self.total and since % (self.length - self.rewind) == 0

    def position(self, step: int) -> int:
        if step < self.length:
            return step
        return self.rewind + (step - self.length) % (self.length - self.rewind)


class Lottery(Pruner):
    """Iterative magnitude pruning with rewinding to step prune.rewind_step (lottery tickets)."""

    name = "lottery"
    needs_gradients = False  # prunes by |θ_T| before the round's first forward pass
    follows_schedule = False
    zero_stages = (0,)  # clears the optimizer state, which ZeRO 1/2 partition
    example = {"prune.sparsity": 0.75, "prune.rate": 0.5, "prune.rewind_step": 4}

    class Knobs(MethodKnobs):
        rounds: int = Field(0, ge=0, le=100, description="0 means as many as needed")
        rewind_step: int = Field(0, ge=0, description="the step k rounds rewind to")
        rate: float = Field(0.2, gt=0, lt=1, description="share of remaining pruned a round")

    knobs: Knobs

    def __init__(self, cfg: PruneSettings, model: nn.Module, steps: int, seed: int = 0):
        super().__init__(cfg, model, steps, seed)
        self.model = model
        self.rewind_to: dict[str, Tensor] = {}

    @classmethod
    def check(cls, cfg: TrialView) -> None:
        knobs, sparsity = read_knobs(cls.Knobs, cfg.prune), cfg.prune.sparsity
        if knobs.rounds > 1 and sparsity > 0:
            reached = 1 - (1 - knobs.rate) ** (knobs.rounds - 1)
            if reached >= sparsity:
                raise FieldError(
                    f"{knobs.rounds} rounds at prune.rate {knobs.rate:g} pass prune.sparsity "
                    f"{sparsity:g} before the last round; lower prune.rounds or set it to 0",
                    "prune.rounds",
                    knobs.rounds,
                )
        before_end("prune.rewind_step", knobs.rewind_step, cfg.train.steps)

    def build_schedule(self, cfg: PruneSettings, steps: int) -> Schedule:
        k = self.knobs
        targets = round_targets(cfg.sparsity, k.rate, k.rounds)
        self.rounds = Rounds(tuple(targets), steps, min(k.rewind_step, steps - 1))
        return self.rounds

    def scores(self, weight: Tensor, grad: Tensor | None) -> Tensor:
        return weight.detach().abs()

    def keep_counts(self, scores: dict[str, Tensor], target: float) -> dict[str, int]:
        return global_keep(scores, target, self.min_layer())

    @property
    def total_steps(self) -> int:
        return self.rounds.total

    def position(self, step: int) -> int:
        return self.rounds.position(step)

    @torch.no_grad()
    def before_step(self, step: int, optimizer: torch.optim.Optimizer) -> bool:
        if step == self.rounds.rewind:
            self.rewind_to = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
        if not self.rounds.should_update(step):
            return False
        self.prune_to(self.rounds.sparsity_at(step))
        self.model.load_state_dict(self.rewind_to)
        self.masks.apply()
        optimizer.state.clear()  # a fresh optimizer: no momentum from the last round
        return True

    def state_dict(self) -> tuple[dict[str, Tensor], dict[str, Any]]:
        tensors, meta = super().state_dict()
        tensors.update({f"rewind/{k}": v for k, v in self.rewind_to.items()})
        return tensors, meta

    def load_state_dict(self, tensors: dict[str, Tensor], meta: dict[str, Any]) -> None:
        super().load_state_dict(tensors, meta)
        prefix = "rewind/"
        self.rewind_to = {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}
