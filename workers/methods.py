"""Sparsity methods: each one a small class with one scoring hook (ALGORITHMS.md §6).

A method says how much each weight is worth (``scores``); the shared :class:`Pruner` turns
scores into exact per-layer masks at the sparsity its schedule asks for. Register a new
method with :func:`register`.

>>> import torch
>>> Magnitude().scores(torch.tensor([-2.0, 0.5]), None).tolist()
[2.0, 0.5]
"""

from __future__ import annotations

from typing import ClassVar

import torch


class Method:
    """Base class: higher score = more worth keeping."""

    name: ClassVar[str]
    prunes: ClassVar[bool] = True

    def scores(self, weight: torch.Tensor, grad: torch.Tensor | None) -> torch.Tensor:
        raise NotImplementedError


class Dense(Method):
    """``none``: the dense baseline; masks stay all ones."""

    name = "none"
    prunes = False

    def scores(self, weight: torch.Tensor, grad: torch.Tensor | None) -> torch.Tensor:
        return torch.ones_like(weight)


class Magnitude(Method):
    """Layer-wise magnitude pruning: keep the largest |w| of each layer."""

    name = "magnitude"

    def scores(self, weight: torch.Tensor, grad: torch.Tensor | None) -> torch.Tensor:
        return weight.detach().abs()


METHODS: dict[str, type[Method]] = {}


def register(cls: type[Method]) -> type[Method]:
    METHODS[cls.name] = cls
    return cls


def build_method(name: str) -> Method:
    try:
        return METHODS[name]()
    except KeyError:
        raise KeyError(f"unknown prune.method {name!r}; choose one of {sorted(METHODS)}") from None


for _cls in (Dense, Magnitude):
    register(_cls)
