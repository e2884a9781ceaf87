"""The registry of sparsity methods, and the ones that are nothing but a scoring hook.

Each method is a small :class:`~spx.workers.pruner.Pruner` subclass; the shared base turns
its scores into exact masks on its schedule. ``prune.method`` names one of :data:`METHODS`;
register your own with :func:`register`.

- ``none``: the dense baseline.
- ``magnitude``: layer-wise |w|, gradual (Zhu–Gupta cubic) or one-shot (ALGORITHMS.md §6).
- ``global-magnitude``: one |w| threshold across layers with the minimum-weights-per-layer
  (MT) rule (§10), on the same schedules.
- ``random``: random masks at init with uniform/ER/ERK layer densities (§8a, the random
  pruning baseline), drawn from the trial's own mask RNG stream.
- ``channel``: structured; whole output channels/neurons by L2 norm on the same schedules,
  never the outputs of the model's output layer (so the model can be physically shrunk:
  a pruned channel's output is a constant, foldable into the next layer's bias).
- ``lottery`` (§9), ``nm`` (§7), ``rigl`` / ``set`` (§8b, §8c): see their modules.
- ``oto`` (§4c, DHSPG) and ``nodes`` (§3, random node masks): whole zero-invariant groups
  of units (``zig.py``), so the model can be compacted exactly (``compact.py``).

>>> sorted(METHODS)  # doctest: +NORMALIZE_WHITESPACE
['channel', 'global-magnitude', 'lottery', 'magnitude', 'nm', 'nodes', 'none', 'oto',
 'random', 'rigl', 'set']
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from spx.workers.allocation import global_keep
from spx.workers.config import PruneConfig, TrialConfig
from spx.workers.dst import SET, RigL
from spx.workers.lottery import Lottery
from spx.workers.masks import keep_top, output_layer
from spx.workers.oto import OTO, Nodes
from spx.workers.pruner import Pruner
from spx.workers.schedules import Constant, Schedule
from spx.workers.srste import NM


class Dense(Pruner):
    """``none``: masks stay all ones and nothing is touched."""

    name = "none"
    prunes = False

    def scores(self, weight: Tensor, grad: Tensor | None) -> Tensor:
        return torch.ones_like(weight)


class Magnitude(Pruner):
    """Layer-wise magnitude pruning: keep the largest |w| of each layer (§6)."""

    name = "magnitude"

    def scores(self, weight: Tensor, grad: Tensor | None) -> Tensor:
        return weight.detach().abs()


class GlobalMagnitude(Magnitude):
    """One |w| threshold across all layers, then the MT rule so no layer collapses (§10)."""

    name = "global-magnitude"

    def keep_counts(self, scores: dict[str, Tensor], target: float) -> dict[str, int]:
        return global_keep(scores, target, self.min_layer())


class Random(Pruner):
    """Random masks at init (step 0) with ``prune.distribution`` densities (§8a)."""

    name = "random"

    def build_schedule(self, cfg: PruneConfig, steps: int) -> Schedule:
        return Constant(cfg.sparsity)

    def scores(self, weight: Tensor, grad: Tensor | None) -> Tensor:
        return torch.rand(weight.shape, generator=self.generator).to(weight.device)


class Channel(Pruner):
    """Whole output channels by L2 norm; the output layer keeps all its outputs."""

    name = "channel"

    def dense_layers(self, model: nn.Module) -> set[str]:
        last = output_layer(model, self.weights)
        return {last} if last else set()

    def scores(self, weight: Tensor, grad: Tensor | None) -> Tensor:
        norms = weight.detach().flatten(1).norm(dim=1)
        return norms.view(-1, *[1] * (weight.dim() - 1)).expand_as(weight)

    def select(self, scores: Tensor, keep: int) -> Tensor:
        per_channel = scores[0].numel()
        channels = keep_top(scores.flatten(1)[:, 0], round(keep / per_channel))
        return channels.view(-1, *[1] * (scores.dim() - 1)).expand_as(scores).contiguous()


METHODS: dict[str, type[Pruner]] = {}


def register(cls: type[Pruner]) -> type[Pruner]:
    METHODS[cls.name] = cls
    return cls


def method_class(name: str) -> type[Pruner]:
    try:
        return METHODS[name]
    except KeyError:
        raise KeyError(f"unknown prune.method {name!r}; choose one of {sorted(METHODS)}") from None


def build_pruner(cfg: TrialConfig, model: nn.Module) -> Pruner:
    """The trial's pruner for ``model``, its mask RNG seeded from ``train.seed``."""
    cls = method_class(cfg.prune.method)
    return cls(cfg.prune, model, cfg.train.steps, seed=cfg.train.seed)


for _cls in (
    Dense,
    Magnitude,
    GlobalMagnitude,
    Random,
    Channel,
    Lottery,
    NM,
    RigL,
    SET,
    OTO,
    Nodes,
):
    register(_cls)
