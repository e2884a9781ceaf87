"""Compile every Triton kernel of spx.kernels for an NVIDIA sm_90 GPU, with no GPU here.

Triton's interpreter (how the other kernel tests run without CUDA) accepts code the GPU
compiler rejects, e.g. a kernel reading a plain module global. This script closes that gap:
it points Triton at a stand-in driver that names an sm_90 target, makes every launch a
compile-only warm-up, drives each fast-path wrapper the way spx calls it, and prints a JSON
line ``{"compiled": [...], "kernels": [...], "failed": [...]}``. Each compile goes all the
way to a cubin through the ptxas that ships with Triton.

Run by test_triton_compile.py in a child process without TRITON_INTERPRET.
"""

from __future__ import annotations

import json
import os
import traceback

import torch
import triton
from triton.backends.compiler import GPUTarget
from triton.runtime import jit
from triton.runtime.driver import driver

COMPILED: list[str] = []
FAILED: list[str] = []


class _CompileOnlyDriver:
    """What Triton asks of a driver before it compiles; nothing is ever launched."""

    def get_current_device(self) -> int:
        return 0

    def get_current_stream(self, device: int | None = None) -> int:
        return 0

    def get_current_target(self) -> GPUTarget:
        return GPUTarget("cuda", 90, 32)

    def get_active_torch_device(self) -> torch.device:
        return torch.device("cpu")


_launch = jit.JITFunction.run


def _compile_only(self, *args, grid, warmup, **kwargs):  # noqa: ANN001, ANN202
    name = self.fn.__name__
    try:
        kernel = _launch(self, *args, grid=grid, warmup=True, **kwargs)
        if not kernel.asm.get("cubin"):
            raise RuntimeError("no cubin")
        COMPILED.append(name)
    except Exception:  # report every failure, not just the first
        FAILED.append(f"{name}: {traceback.format_exc(limit=-3)}")


def main() -> None:
    driver.set_active(_CompileOnlyDriver())
    jit.JITFunction.run = _compile_only
    from spx.kernels import triton_ops as fast
    from spx.kernels.chunking import layout_for
    from spx.kernels.compress import SparseLoCoCompressor

    for x in (torch.randn(128, 64), torch.randn(64).bfloat16()):
        fast.chunk_topk(x, layout_for(x.shape), 8)
    for bits in (2, 8):
        fast.quantize_codes(torch.randn(3000), 0.3, 2**bits)
        packed = fast.pack_codes(torch.zeros(5001, dtype=torch.uint8), bits)
        fast.unpack_codes(packed, bits, 5001)
    fast.unpack_indices12(fast.pack_indices12(torch.zeros(4097, dtype=torch.int64)), 4097)
    os.environ["SPX_KERNELS"] = "reference"  # the payloads themselves come from torch
    for shape, side in (((256, 192), 64), ((3, 70000), 70000)):  # 12- and 32-bit indices
        payload, _ = SparseLoCoCompressor(topk=64, chunk=side).compress(torch.randn(shape))
        layout = layout_for(payload.shape, payload.chunk)
        out, counts = torch.zeros(layout.numel), torch.zeros(layout.numel)
        fast.decode(payload.fields, layout, out)
        fast.decode(payload.fields, layout, out, counts)
    fast.ef_update(torch.randn(5000), torch.randn(5000), 0.95, 0.7)

    kernels = sorted(
        name
        for name, value in vars(fast).items()
        if isinstance(value, jit.JITFunction) and name.endswith("_kernel")
    )
    report = {"compiled": sorted(set(COMPILED)), "kernels": kernels, "failed": FAILED}
    print(json.dumps(report))


if __name__ == "__main__":
    print(f"triton {triton.__version__}", flush=True)
    main()
