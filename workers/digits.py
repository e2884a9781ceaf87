"""scikit-learn's bundled 8x8 digits (1 797 images), split once into train and held-out val.

The split uses its own fixed seed so every trial, whatever its ``train.seed``, validates on
the same 20 %. Given a data folder, the images are cached there as ``digits.npz`` the first
time: importing scikit-learn costs a fresh worker process ~2 s, reading the cache ~1 ms.
"""

from __future__ import annotations

import os
import zipfile
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

SPLIT_SEED = 1234
VAL_FRACTION = 0.2


@dataclass(frozen=True)
class Split:
    x: Tensor
    y: Tensor


CACHE = "digits.npz"


@lru_cache(maxsize=2)
def load(data_dir: Path | None = None) -> tuple[Split, Split]:
    """(train, val); cached in ``data_dir`` when one is given."""
    pixels, labels = _cached(Path(data_dir)) if data_dir is not None else _from_sklearn()
    x = torch.tensor(pixels, dtype=torch.float32) / 16.0
    y = torch.tensor(labels, dtype=torch.long)
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(SPLIT_SEED))
    n_val = int(len(y) * VAL_FRACTION)
    val, train = order[:n_val], order[n_val:]
    return Split(x[train], y[train]), Split(x[val], y[val])


def _from_sklearn() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    data = load_digits()
    return data.data.astype(np.uint8), data.target.astype(np.int64)


def _cached(data_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    path = data_dir / CACHE
    try:
        with np.load(path) as cached:
            return cached["pixels"], cached["labels"]
    except (OSError, KeyError, ValueError, EOFError, zipfile.BadZipFile):  # missing or torn
        pass
    pixels, labels = _from_sklearn()
    data_dir.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{CACHE}.tmp-{os.getpid()}.npz")
    np.savez(tmp, pixels=pixels, labels=labels)
    os.replace(tmp, path)  # atomic: concurrent workers never read half a file
    return pixels, labels


def part(name: str, data_dir: Path | None = None) -> Split:
    """``train`` or ``val``, or a fixed half of train: ``search`` (even positions of the
    shuffled split) or ``holdout`` (odd), for architecture search."""
    train, val = load(data_dir)
    if name == "train":
        return train
    if name == "val":
        return val
    if name not in ("search", "holdout"):
        raise ValueError(f"unknown data part {name!r}")
    start = 0 if name == "search" else 1
    return Split(train.x[start::2], train.y[start::2])
