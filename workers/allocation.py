"""How a model-wide sparsity target is split into per-layer weight counts.

Layer-wise methods take their per-layer densities from a distribution (ALGORITHMS.md §8a):

- ``uniform``: every layer at the target sparsity, rounded per layer.
- ``er``: density ∝ (n_in + n_out) / (n_in · n_out), kernel dimensions left out.
- ``erk``: density ∝ Σ dims / Π dims, kernel dimensions included.

For ER/ERK the scale ε is solved so the kept weights add up to the target; a layer that
would exceed density 1 is made dense and the rest re-solved, until every density is valid.

Global methods take one threshold across layers (§10): the top-k of all scores, then the
minimum-weights-per-layer rule (MT) so no layer collapses.

>>> shapes = {"a": (10, 10), "b": (10, 100)}
>>> {k: round(v, 4) for k, v in densities(shapes, 0.5, "erk").items()}
{'a': 0.8462, 'b': 0.4654}
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import Tensor

from spx.workers.masks import keep_top

Distribution = Literal["uniform", "er", "erk"]


def densities(
    shapes: dict[str, tuple[int, ...]], sparsity: float, kind: Distribution
) -> dict[str, float]:
    """Per-layer densities whose weighted mean is ``1 - sparsity``."""
    if kind == "uniform":
        return {name: 1.0 - sparsity for name in shapes}
    return _erdos_renyi(shapes, sparsity, include_kernel=kind == "erk")


def _raw(shape: tuple[int, ...], include_kernel: bool) -> float:
    dims = shape if include_kernel else shape[:2]
    return sum(dims) / math.prod(dims)


def _erdos_renyi(
    shapes: dict[str, tuple[int, ...]], sparsity: float, include_kernel: bool
) -> dict[str, float]:
    sizes = {name: math.prod(shape) for name, shape in shapes.items()}
    raw = {name: _raw(shape, include_kernel) for name, shape in shapes.items()}
    dense: set[str] = set()
    keep = (1.0 - sparsity) * sum(sizes.values())
    while True:
        free = [n for n in shapes if n not in dense]
        budget = keep - sum(sizes[n] for n in dense)
        weight = sum(raw[n] * sizes[n] for n in free)
        eps = budget / weight if weight > 0 else 0.0
        over = [n for n in free if eps * raw[n] > 1.0]
        if not over:
            return {n: 1.0 if n in dense else eps * raw[n] for n in shapes}
        dense.add(max(over, key=lambda n: raw[n]))  # the densest layer first, then re-solve


def apportion(amounts: dict[str, float], total: int) -> dict[str, int]:
    """Whole counts near ``amounts`` adding up to ``total`` (largest remainders round up).

    >>> apportion({"a": 2.5, "b": 1.7, "c": 0.8}, 5)
    {'a': 2, 'b': 2, 'c': 1}
    """
    counts = {name: math.floor(a) for name, a in amounts.items()}
    short = total - sum(counts.values())
    by_remainder = sorted(amounts, key=lambda n: amounts[n] - counts[n], reverse=True)
    for name in by_remainder[: max(short, 0)]:
        counts[name] += 1
    return counts


def keep_counts(
    shapes: dict[str, tuple[int, ...]], sparsity: float, kind: Distribution
) -> dict[str, int]:
    """Weights each layer keeps at ``sparsity`` under a distribution.

    Uniform rounds every layer on its own (exact to one weight per layer); ER/ERK share the
    rounding so the model-wide count is exact.
    """
    sizes = {name: math.prod(shape) for name, shape in shapes.items()}
    if kind == "uniform":
        return {name: size - round(sparsity * size) for name, size in sizes.items()}
    dens = densities(shapes, sparsity, kind)
    total = sum(sizes.values()) - round(sparsity * sum(sizes.values()))
    return apportion({n: dens[n] * sizes[n] for n in shapes}, total)


def global_keep(scores: dict[str, Tensor], sparsity: float, min_layer: int = 0) -> dict[str, int]:
    """Per-layer counts of one global top-k over ``scores``, then the MT rule (§10).

    ``min_layer`` is N_min, the fewest weights a layer keeps (0 turns the rule off).
    """
    sizes = {name: s.numel() for name, s in scores.items()}
    total = sum(sizes.values())
    keep = total - round(sparsity * total)
    chosen = keep_top(torch.cat([s.flatten().float() for s in scores.values()]), keep)
    counts = dict(
        zip(sizes, (int(c.sum()) for c in chosen.split(list(sizes.values()))), strict=True)
    )
    if min_layer <= 0:
        return counts
    pruned = refine_min_layer({n: float(sizes[n] - counts[n]) for n in sizes}, sizes, min_layer)
    return {n: sizes[n] - c for n, c in apportion(pruned, round(sum(pruned.values()))).items()}


def refine_min_layer(
    pruned: dict[str, float], sizes: dict[str, int], min_layer: int
) -> dict[str, float]:
    """MT step 2: tiny layers dense, the rest rescaled, and clamped to keep ``min_layer``.

    Rescaling is multiplicative on the per-layer pruned counts (not a new global
    threshold), repeated until no layer is newly clamped, so the total pruned count stays
    the global one whenever that is reachable.

    >>> refine_min_layer({"big": 80.0, "small": 10.0}, {"big": 100, "small": 10}, 4)
    {'small': 6.0, 'big': 84.0}
    """
    target = sum(pruned.values())
    fixed = {n: 0.0 for n, size in sizes.items() if size < min_layer}
    free = {n: p for n, p in pruned.items() if n not in fixed}
    while free:
        room = target - sum(fixed.values())
        mass = sum(free.values())
        scale = room / mass if mass > 0 else 0.0
        scaled = {n: p * scale for n, p in free.items()}
        over = [n for n, p in scaled.items() if sizes[n] - p < min_layer]
        if not over:
            return {**fixed, **scaled}
        for name in over:
            fixed[name] = float(sizes[name] - min_layer)
            del free[name]
    return fixed
