"""scikit-learn's bundled 8x8 digits (1 797 images), split once into train and held-out val.

The split uses its own fixed seed so every trial, whatever its ``train.seed``, validates on
the same 20 %.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import torch
from torch import Tensor

SPLIT_SEED = 1234
VAL_FRACTION = 0.2


@dataclass(frozen=True)
class Split:
    x: Tensor
    y: Tensor


@lru_cache(maxsize=1)
def load() -> tuple[Split, Split]:
    from sklearn.datasets import load_digits

    data = load_digits()
    x = torch.tensor(data.data, dtype=torch.float32) / 16.0
    y = torch.tensor(data.target, dtype=torch.long)
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(SPLIT_SEED))
    n_val = int(len(y) * VAL_FRACTION)
    val, train = order[:n_val], order[n_val:]
    return Split(x[train], y[train]), Split(x[val], y[val])


def part(name: str) -> Split:
    """``train`` or ``val``, or a fixed half of train: ``search`` (even positions of the
    shuffled split) or ``holdout`` (odd), for architecture search."""
    train, val = load()
    if name == "train":
        return train
    if name == "val":
        return val
    if name not in ("search", "holdout"):
        raise ValueError(f"unknown data part {name!r}")
    start = 0 if name == "search" else 1
    return Split(train.x[start::2], train.y[start::2])
