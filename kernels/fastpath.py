"""Which implementation a kernel call takes: the torch reference or the Triton fast path.

Every kernel function in this folder is a torch reference that first asks
:func:`enabled` whether to hand its tensors to :mod:`spx.kernels.triton_ops` instead.
The environment variable ``SPX_KERNELS`` decides:

- ``auto`` (default): Triton when every tensor is on a CUDA device and Triton imports (it
  comes with torch's CUDA builds); the reference otherwise.
- ``reference``: always the torch reference, e.g. to compare the two on one GPU.
- ``triton``: always Triton, CPU tensors included. Those run only in Triton's interpreter
  (``TRITON_INTERPRET=1`` set before the first kernel runs), which is how the tests check
  the whole compressor through the fast path on a machine without a GPU.
"""

from __future__ import annotations

import importlib.util
import os
from functools import cache
from types import ModuleType

from torch import Tensor

MODES = ("auto", "reference", "triton")


def mode() -> str:
    """``SPX_KERNELS``, checked against :data:`MODES`."""
    value = os.environ.get("SPX_KERNELS", "auto") or "auto"
    if value not in MODES:
        raise ValueError(f"SPX_KERNELS must be one of {MODES}, got {value!r}")
    return value


@cache
def triton_importable() -> bool:
    return importlib.util.find_spec("triton") is not None


def enabled(*tensors: Tensor) -> bool:
    """Whether a kernel given ``tensors`` should take the Triton fast path."""
    chosen = mode()
    if chosen == "reference":
        return False
    if chosen == "triton":
        return True
    return triton_importable() and all(t.is_cuda for t in tensors)


def ops() -> ModuleType:
    """:mod:`spx.kernels.triton_ops`, imported on first use (it imports Triton)."""
    from spx.kernels import triton_ops

    return triton_ops
