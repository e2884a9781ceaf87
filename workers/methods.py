"""The registry of sparsity methods, and the ones that are nothing but a scoring hook.

Each method is a small :class:`~spx.workers.pruner.Pruner` subclass with its own knobs,
checks and capability flags; the shared base turns its scores into exact masks on its
schedule. ``prune.method`` names one of :data:`METHODS`: the trial config, the JSON Schema,
the loop, export and the conformance suite read this registry, and nothing else keeps a
list of method names. A new method is one file plus its entry in the tuple at the end
(with its import); :func:`register` also takes a method defined anywhere else.

- ``none``: the dense baseline.
- ``magnitude``: layer-wise |w|, gradual (Zhu & Gupta 2017, cubic) or one-shot.
- ``global-magnitude``: one |w| threshold across layers with a minimum number of weights
  per layer, on the same schedules.
- ``random``: random masks at init with uniform/ER/ERK layer densities (Liu et al. 2022,
  "The unreasonable effectiveness of random pruning"), from the trial's own mask RNG.
- ``channel``: structured; whole output channels/neurons by L2 norm on the same schedules,
  never the outputs of the model's output layer (so the model can be physically shrunk:
  a pruned channel's output is a constant, foldable into the next layer's bias).
- ``lottery``, ``nm``, ``rigl`` / ``set``, ``snip``: see their modules.
- ``oto`` (OTOv2's DHSPG) and ``nodes`` (random node masks): whole zero-invariant groups
  of units (``zig.py``), so the model can be compacted exactly (``compact.py``).

>>> method_class("snip").traits(), [k for k in method_class("lottery").Knobs.model_fields]
('scores gradients, ZeRO stage 0 only', ['rounds', 'rewind_step', 'rate'])
"""

from __future__ import annotations

from typing import Any, ClassVar, TypeVar

import torch
from torch import Tensor, nn

from spx.errors import ConfigError
from spx.workers.allocation import global_keep
from spx.workers.dst import SET, RigL
from spx.workers.knobs import PruneSettings, TrialView
from spx.workers.lottery import Lottery
from spx.workers.masks import keep_top, output_layer, prunable_weights
from spx.workers.oneshot_methods import OneShotMagnitude, SparseGPT, Wanda
from spx.workers.oto import OTO, Nodes
from spx.workers.pruner import Pruner
from spx.workers.snip import SNIP
from spx.workers.srste import NM


class Dense(Pruner):
    """The dense baseline: masks stay all ones and nothing is touched."""

    name = "none"
    prunes = False
    needs_gradients = False
    zero_stages = (0, 1, 2)
    example: ClassVar[dict[str, Any]] = {}

    def scores(self, weight: Tensor, grad: Tensor | None) -> Tensor:
        return torch.ones_like(weight)


class Magnitude(Pruner):
    """Layer-wise magnitude pruning: keep the largest |w| of each layer."""

    name = "magnitude"
    needs_gradients = False  # scored before the forward pass, as Zhu & Gupta order it
    zero_stages = (0, 1, 2)
    example = {"prune.sparsity": 0.75}

    def scores(self, weight: Tensor, grad: Tensor | None) -> Tensor:
        return weight.detach().abs()


class GlobalMagnitude(Magnitude):
    """One |w| threshold across all layers, with a floor of weights per layer."""

    name = "global-magnitude"

    def keep_counts(self, scores: dict[str, Tensor], target: float) -> dict[str, int]:
        return global_keep(scores, target, self.min_layer())


class Random(Pruner):
    """Random masks with prune.distribution's layer densities."""

    name = "random"
    needs_gradients = False
    follows_schedule = False
    masks_at_step0 = True
    zero_stages = (0, 1, 2)
    example = {"prune.sparsity": 0.75, "prune.distribution": "erk"}

    def scores(self, weight: Tensor, grad: Tensor | None) -> Tensor:
        return torch.rand(weight.shape, generator=self.generator).to(weight.device)


class Channel(Pruner):
    """Whole output channels by L2 norm; the output layer keeps all its outputs, so the
    other layers prune more: ``prune.sparsity`` is reached over all prunable weights."""

    name = "channel"
    needs_gradients = False
    compacts = True
    zero_stages = (0, 1, 2)

    def dense_layers(self, model: nn.Module) -> set[str]:
        last = output_layer(model, self.weights)
        return {last} if last else set()

    def keep_counts(self, scores: dict[str, Tensor], target: float) -> dict[str, int]:
        return super().keep_counts(scores, self.layer_target(target))

    def layer_target(self, target: float) -> float:
        """The sparsity of the pruned layers that makes all prunable weights' ``target``."""
        total = sum(w.numel() for w in self.weights.values())
        dense = sum(self.weights[n].numel() for n in self.exempt)
        return min(target * total / max(total - dense, 1), 1.0)

    @classmethod
    def validate(cls, cfg: TrialView, model: nn.Module) -> None:
        weights = prunable_weights(model, cfg.prune.embeddings)
        last = output_layer(model, weights)
        total = sum(w.numel() for w in weights.values())
        dense = weights[last].numel() if last else 0
        reachable = (total - dense) / total if total else 0.0
        if cfg.prune.sparsity >= reachable:
            raise ConfigError(
                f"channel keeps the output layer {last} whole ({dense} of {total} prunable "
                f"weights), so the sparsity must stay below {reachable:.4f}",
                field="prune.sparsity",
                value=cfg.prune.sparsity,
            )

    def scores(self, weight: Tensor, grad: Tensor | None) -> Tensor:
        norms = weight.detach().flatten(1).norm(dim=1)
        return norms.view(-1, *[1] * (weight.dim() - 1)).expand_as(weight)

    def select(self, scores: Tensor, keep: int) -> Tensor:
        per_channel = scores[0].numel()
        channels = keep_top(scores.flatten(1)[:, 0], round(keep / per_channel))
        return channels.view(-1, *[1] * (scores.dim() - 1)).expand_as(scores).contiguous()


METHODS: dict[str, type[Pruner]] = {}
P = TypeVar("P", bound=type[Pruner])


def register(cls: P) -> P:
    """Add ``cls`` to :data:`METHODS` under ``cls.name`` (usable as a class decorator): its
    knobs become ``prune.*`` keys of every trial config built from then on. Refuses flags
    that contradict each other and a knob that clashes with a shared key or with another
    method's knob of the same name."""
    if cls.needs_gradients and set(cls.zero_stages) - {0}:
        raise TypeError(
            f"{cls.__name__} needs gradients, which ZeRO 1/2 partition away: set zero_stages = (0,)"
        )
    for key, field in cls.Knobs.model_fields.items():
        if key in PruneSettings.model_fields:
            raise TypeError(f"{cls.__name__}.Knobs.{key} is a shared prune.* key")
        if field.is_required() or not field.description:
            raise TypeError(f"{cls.__name__}.Knobs.{key} needs a default and a description")
        for other in METHODS.values():
            theirs = other.Knobs.model_fields.get(key)
            if other.name != cls.name and theirs is not None and repr(theirs) != repr(field):
                raise TypeError(f"{cls.__name__}.Knobs.{key} differs from {other.name}'s")
    METHODS[cls.name] = cls
    return cls


def method_class(name: str) -> type[Pruner]:
    try:
        return METHODS[name]
    except KeyError:
        raise KeyError(f"unknown prune.method {name!r}; choose one of {sorted(METHODS)}") from None


def build_pruner(cfg: TrialView, model: nn.Module) -> Pruner:
    """The trial's pruner for ``model``, its mask RNG seeded from ``train.seed``."""
    cls = method_class(cfg.prune.method)
    return cls(cfg.prune, model, cfg.train.steps, seed=cfg.train.seed)


# Registration order is the order of the knobs in a trial's flat config.
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
    Nodes,
    OTO,
    SNIP,
    OneShotMagnitude,
    Wanda,
    SparseGPT,
):
    register(_cls)
