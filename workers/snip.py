"""SNIP: single-shot pruning by connection sensitivity (Lee, Ajanthan & Torr, ICLR 2019).

Once, at step ``prune.snip_step`` (0: at init, as in the paper), on that step's batch: the
sensitivity of weight j is s_j = |∂L/∂c_j| / Σ_k |∂L/∂c_k| for a mask c at 1, where
∂L/∂c_j = w_j · ∂L/∂w_j; the largest (1 − ``prune.sparsity``) of all weights, across
layers, are kept (``prune.min_layer_fraction`` keeps a floor per layer; 0: the paper's plain
global top-κ), and the masks stay fixed. The loop hands ``scores`` that step's gradient.
"""

from __future__ import annotations

from pydantic import Field
from torch import Tensor

from spx.workers.allocation import global_keep
from spx.workers.knobs import MethodKnobs, PruneSettings, TrialView, before_end, read_knobs
from spx.workers.pruner import Pruner
from spx.workers.schedules import OneShot, Schedule


class SNIP(Pruner):
    """One-shot global pruning by connection sensitivity |w·g| on one batch."""

    name = "snip"
    follows_schedule = False  # scored once, at prune.snip_step, after its backward pass
    example = {"prune.sparsity": 0.75}

    class Knobs(MethodKnobs):
        snip_step: int = Field(0, ge=0, description="the step whose batch scores the weights")

    knobs: Knobs

    @classmethod
    def check(cls, cfg: TrialView) -> None:
        before_end("prune.snip_step", read_knobs(cls.Knobs, cfg.prune).snip_step, cfg.train.steps)

    def build_schedule(self, cfg: PruneSettings, steps: int) -> Schedule:
        return OneShot(cfg.sparsity, at=self.knobs.snip_step)

    def scores(self, weight: Tensor, grad: Tensor | None) -> Tensor:
        if grad is None:  # the loss does not reach this weight: it has no sensitivity
            return weight.new_zeros(weight.shape)
        return (weight.detach() * grad).abs()

    def keep_counts(self, scores: dict[str, Tensor], target: float) -> dict[str, int]:
        # One global top-k; s_j's normaliser is one constant for all j, so |w·g| ranks alike.
        return global_keep(scores, target, self.min_layer())
