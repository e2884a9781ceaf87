"""Compact subnetworks: cut dropped units out of a model for real (ALGORITHMS.md §4e).

:func:`compact` returns a deep copy whose Linear, Conv and BatchNorm layers are rebuilt
with fewer channels, and whose outputs (eval mode) equal the pruned model's. Which units
are dropped comes from a group pruner (``oto``, ``nodes``: their keep-vectors), a mapping
group name -> keep-vector, or, with no source, from the weights themselves: a unit whose
producer weight rows are all zero is dropped (a trained oto/nodes model loaded from a
checkpoint, or the ``channel`` method's pruned output channels).

A dropped unit is cut exactly when its consumers' input slices are zero (oto and nodes
zero every slice). Otherwise its value must be input-independent (producer rows zero: a
bias, a BatchNorm β, an activation of those) and is folded into each consumer: a Linear
consumer's bias absorbs W[:, j]·c_j; a Conv consumer cannot (its zero padding makes a
constant channel position-dependent), so such a unit stays and is counted in ``stuck``.
That is the ``channel`` method on the CNN: its pruned rows keep their BatchNorm β.

>>> import torch
>>> from torch import nn
>>> model = nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 2))
>>> with torch.no_grad():
...     model[0].weight[:3] = 0  # the channel method's pruned rows; their biases stay
>>> small, counts = compact(model, torch.ones(1, 4))
>>> small[0], counts.removed, (counts.full.params, counts.small.params)
(Linear(in_features=4, out_features=3, bias=True), {'0': 3}, (44, 23))
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TypeAlias

import torch
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.modules.conv import _ConvNd

from spx.workers import zig
from spx.workers.accounting import positions_per_example
from spx.workers.oto import GroupPruner
from spx.workers.pruner import Pruner

Source: TypeAlias = Pruner | Mapping[str, Tensor] | None


@dataclass(frozen=True)
class Cost:
    """Parameters (tied ones once) and multiply-adds per example in Linear/Conv layers."""

    params: int
    flops: int


@dataclass(frozen=True)
class Compaction:
    """What compaction did: costs before and after, units cut and left per group."""

    full: Cost
    small: Cost
    removed: dict[str, int]
    kept: dict[str, int]
    stuck: dict[str, int]  # dropped units that could not be cut exactly (left in)

    def metrics(self) -> dict[str, float]:
        return {
            "compact/params": float(self.small.params),
            "compact/flops": float(self.small.flops),
            "compact/params_ratio": self.small.params / max(self.full.params, 1),
            "compact/flops_ratio": self.small.flops / max(self.full.flops, 1),
        }


def cost(model: nn.Module, example: Tensor) -> Cost:
    """Dense parameter count and FLOPs per example (accounting's convention)."""
    with _evaluating(model):
        positions = positions_per_example(model, example)
    flops = sum(n * zig.resolve(model, k).numel() for k, n in positions.items())
    return Cost(sum(p.numel() for p in model.parameters()), flops)


def kept_units(model: nn.Module, source: Source = None) -> dict[str, Tensor]:
    """Group name -> keep-vector (True: alive) for every removable group of ``model``."""
    return {g.name: k for g, k in _pairs(model, source)}


def compact(
    model: nn.Module, example: Tensor, source: Source = None
) -> tuple[nn.Module, Compaction]:
    """A physically smaller copy of ``model`` without its dropped units, and the counts.

    ``example`` is one input batch (``Task.example_input``): it counts FLOPs and, where a
    dropped unit's constant value must be folded into a consumer's bias, yields it.
    """
    pairs = _pairs(model, source)
    cut, folds, stuck = _plan(model, pairs, example)
    small = copy.deepcopy(model)
    for path, (rows, cols) in _module_keeps(model, pairs, cut).items():
        new = _shrink(model.get_submodule(path), rows, cols, folds.get(path))
        parent, _, child = path.rpartition(".")
        setattr(small.get_submodule(parent), child, new)
    counts = Compaction(
        full=cost(model, example),
        small=cost(small, example),
        removed={g.name: int(c.sum()) for (g, _), c in zip(pairs, cut, strict=True)},
        kept={g.name: int((~c).sum()) for (g, _), c in zip(pairs, cut, strict=True)},
        stuck={g.name: n for (g, _), n in zip(pairs, stuck, strict=True) if n},
    )
    return small, counts


# -- which units go, and how ----------------------------------------------------------------


def _pairs(model: nn.Module, source: Source) -> list[tuple[zig.Group, Tensor]]:
    if isinstance(source, GroupPruner):  # oto, nodes: their own keep-vectors
        return list(zip(source.space, source.keep, strict=True))
    space = zig.removable(model)
    if isinstance(source, Mapping):
        return [(g, source[g.name].bool()) for g in space if g.name in source]
    with torch.no_grad():
        return [(g, ~_zero_rows(model, g)) for g in space]


def _zero_rows(model: nn.Module, group: zig.Group) -> Tensor:
    """Units whose producer weight rows are all zero."""
    zero = torch.ones(group.size, dtype=torch.bool)
    for s in group.slices:
        if s.kind == "out" and s.name.endswith(".weight"):
            rows = s.rows(zig.resolve(model, s.name).detach(), group.size)
            zero &= (rows == 0).all(1).cpu()
    return zero


def _plan(
    model: nn.Module, pairs: list[tuple[zig.Group, Tensor]], example: Tensor
) -> tuple[list[Tensor], dict[str, Tensor], list[int]]:
    """Per group the units to cut, per Linear consumer the bias to fold in, and per group
    how many dropped units had to stay."""
    with torch.no_grad():
        needs = [(g, ~k.cpu() & _live_inputs(model, g)) for g, k in pairs]
        wanted = {s.name.removesuffix(".weight") for g, n in needs if n.any() for s in _ins(g)}
        inputs = _consumer_inputs(model, example, wanted)
        cut: list[Tensor] = []
        stuck: list[int] = []
        folds: dict[str, Tensor] = {}
        for (group, keep), (_, need) in zip(pairs, needs, strict=True):
            ok = ~keep.cpu() & ~need
            constant = _zero_rows(model, group)  # its value does not depend on the input
            for j in need.nonzero().flatten().tolist():
                deltas = _fold(model, group, j, inputs) if constant[j] else None
                if deltas is not None:
                    ok[j] = True
                    for path, delta in deltas.items():
                        folds[path] = folds[path] + delta if path in folds else delta
            cut.append(ok)
            stuck.append(int((~keep.cpu() & ~ok).sum()))
    return cut, folds, stuck


def _ins(group: zig.Group) -> list[zig.Slice]:
    return [s for s in group.slices if s.kind == "in"]


def _live_inputs(model: nn.Module, group: zig.Group) -> Tensor:
    """Units some consumer still reads (a nonzero input slice)."""
    live = torch.zeros(group.size, dtype=torch.bool)
    for s in _ins(group):
        live |= (s.rows(zig.resolve(model, s.name).detach(), group.size) != 0).any(1).cpu()
    return live


def _consumer_inputs(model: nn.Module, example: Tensor, paths: set[str]) -> dict[str, Tensor]:
    seen: dict[str, Tensor] = {}
    hooks = []
    for path in paths:

        def hook(_mod: nn.Module, args: tuple, path: str = path) -> None:
            seen.setdefault(path, args[0].detach())

        hooks.append(model.get_submodule(path).register_forward_pre_hook(hook))
    try:
        with _evaluating(model), torch.no_grad():
            if paths:
                model(example)
    finally:
        for h in hooks:
            h.remove()
    return seen


def _fold(
    model: nn.Module, group: zig.Group, j: int, inputs: dict[str, Tensor]
) -> dict[str, Tensor] | None:
    """Bias deltas that replace (constant) unit j at its consumers, or None when it
    cannot go."""
    deltas = {}
    for s in _ins(group):
        path = s.name.removesuffix(".weight")
        mod, weight = model.get_submodule(path), zig.resolve(model, s.name).detach()
        cols = slice(j * s.block, (j + 1) * s.block)
        if not bool((weight[:, cols] != 0).any()):
            continue
        x = inputs[path]
        if isinstance(mod, nn.Linear):
            value = x.reshape(-1, x.shape[-1])[0, cols]  # input-independent: any row will do
            deltas[path] = weight[:, cols] @ value.to(weight.dtype)
        elif bool((x[:, cols] != 0).any()):
            return None  # a Conv reads a nonzero constant channel: padding breaks folding
    return deltas


def _module_keeps(
    model: nn.Module, pairs: list[tuple[zig.Group, Tensor]], cut: list[Tensor]
) -> dict[str, tuple[Tensor | None, Tensor | None]]:
    """Per touched module, which output rows (axis 0) and input columns (axis 1) stay."""
    keeps: dict[tuple[str, int], Tensor] = {}
    for (group, _), gone in zip(pairs, cut, strict=True):
        if not gone.any():
            continue
        for s in group.slices:
            path = s.name.rpartition(".")[0]
            key = (path, 1 if s.kind == "in" else 0)
            stay = (~gone).repeat_interleave(s.block)
            assert stay.numel() == zig.resolve(model, s.name).shape[s.dim], s
            keeps[key] = keeps[key] & stay if key in keeps else stay
    paths = dict.fromkeys(path for path, _ in keeps)
    return {p: (keeps.get((p, 0)), keeps.get((p, 1))) for p in paths}


# -- rebuilding layers ----------------------------------------------------------------------


def _shrink(
    mod: nn.Module, rows: Tensor | None, cols: Tensor | None, fold: Tensor | None
) -> nn.Module:
    """A copy of a Linear, Conv or BatchNorm keeping ``rows`` of its outputs and ``cols``
    of its inputs; ``fold`` (per output) is added to its bias."""
    if not isinstance(mod, nn.Linear | _ConvNd | _BatchNorm):
        raise TypeError(f"cannot shrink {type(mod).__name__}")
    new = copy.deepcopy(mod)
    out: Tensor | slice = slice(None) if rows is None else rows
    with torch.no_grad():
        if fold is not None and getattr(mod, "bias", None) is None:  # a Linear gets a bias
            new.bias = nn.Parameter(fold[out].clone())
        tensors = dict(mod.named_parameters(recurse=False)) | dict(mod.named_buffers(recurse=False))
        for name, tensor in tensors.items():
            if tensor.dim() == 0:  # num_batches_tracked
                continue
            kept = tensor[_on(out, tensor)]
            if name == "bias" and fold is not None:
                kept = kept + fold.to(tensor.dtype)[_on(out, tensor)]
            if name == "weight" and tensor.dim() > 1 and cols is not None:
                kept = kept[:, _on(cols, tensor)]
            if isinstance(tensor, nn.Parameter):
                setattr(new, name, nn.Parameter(kept.clone(), tensor.requires_grad))
            else:
                setattr(new, name, kept.clone())
    _resize(new)
    return new


def _on(index: Tensor | slice, tensor: Tensor) -> Tensor | slice:
    return index.to(tensor.device) if isinstance(index, Tensor) else index


def _resize(mod: nn.Module) -> None:
    """Make a shrunk layer's size attributes match its weights again."""
    if isinstance(mod, nn.Linear):
        mod.out_features, mod.in_features = mod.weight.shape
    elif isinstance(mod, _ConvNd):
        mod.out_channels, mod.in_channels = mod.weight.shape[:2]
    elif isinstance(mod, _BatchNorm):
        ref = mod.running_mean if mod.running_mean is not None else mod.weight
        assert ref is not None
        mod.num_features = ref.shape[0]


class _evaluating:
    """Eval mode for a forward pass that must not touch BatchNorm statistics."""

    def __init__(self, model: nn.Module):
        self.model, self.was = model, model.training

    def __enter__(self) -> None:
        self.model.eval()

    def __exit__(self, *exc: object) -> None:
        self.model.train(self.was)
