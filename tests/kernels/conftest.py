"""Kernel tests: on a machine without CUDA, Triton's kernels run in its interpreter.

``@triton.jit`` reads ``TRITON_INTERPRET`` when a kernel module is imported, so it is set
here, before any test module imports :mod:`spx.kernels.triton_ops`. With CUDA present the
variable is left alone and the same tests run the compiled kernels on the GPU.
"""

from __future__ import annotations

import os

import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")
