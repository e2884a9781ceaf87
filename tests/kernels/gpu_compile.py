"""Compile every Triton kernel of spx.kernels for an NVIDIA sm_90 GPU, with no GPU here.

Triton's interpreter (how the other kernel tests run without CUDA) accepts code the GPU
compiler rejects, e.g. a kernel reading a plain module global. This script closes that gap:
it points Triton at a stand-in driver that names an sm_90 target, makes every launch a
compile-only warm-up, drives each fast-path wrapper the way spx calls it, and prints a JSON
line ``{"compiled": [...], "kernels": [...], "failed": [...]}``. Each compile goes all the
way to a cubin through the ptxas that ships with Triton.

Run by test_triton_compile.py in a child process without TRITON_INTERPRET. By hand,
``--resources`` also prints each compiled variant's registers, spills (LOCAL) and shared
memory as ``cuobjdump -res-usage`` reads them from the cubin::

    env -u TRITON_INTERPRET .venv/bin/python tests/kernels/gpu_compile.py --resources
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import traceback
from pathlib import Path

import torch
import triton
from triton.backends.compiler import GPUTarget
from triton.runtime import jit
from triton.runtime.driver import driver

COMPILED: list[str] = []
FAILED: list[str] = []
CUBINS: list[tuple[str, dict[str, object], bytes]] = []


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
        constexprs = {k: v for k, v in kwargs.items() if k.isupper() or k == "num_warps"}
        CUBINS.append((name, constexprs, kernel.asm["cubin"]))
    except Exception:  # report every failure, not just the first
        FAILED.append(f"{name}: {traceback.format_exc(limit=-3)}")


def main() -> None:
    driver.set_active(_CompileOnlyDriver())
    jit.JITFunction.run = _compile_only
    from spx.kernels import triton_ops as fast
    from spx.kernels.chunking import layout_for
    from spx.kernels.compress import SparseLoCoCompressor

    # the default 64x64 tile, the largest one (128x64, 16 warps) and a bf16 vector
    for x, side in (
        (torch.randn(128, 64), 64),
        (torch.randn(128, 64), 128),
        (torch.randn(64).bfloat16(), 64),
    ):
        fast.chunk_topk(x, layout_for(x.shape, side), 8)
    for bits in (2, 8):
        fast.quantize_codes(torch.randn(3000), 0.3, 2**bits)
        packed = fast.pack_codes(torch.zeros(5001, dtype=torch.uint8), bits)
        fast.unpack_codes(packed, bits, 5001)
    fast.unpack_indices12(fast.pack_indices12(torch.zeros(4097, dtype=torch.int64)), 4097)
    os.environ["SPX_KERNELS"] = "reference"  # the payloads themselves come from torch
    for shape, side in (((256, 192), 64), ((3, 70000), 70000)):  # 12- and 32-bit indices
        payload, _ = SparseLoCoCompressor(topk=64, chunk=side).compress(torch.randn(shape))
        out, counts = torch.zeros(payload.shape).view(-1), torch.zeros(payload.shape).view(-1)
        fast.decode(payload, out)
        fast.decode(payload, out, counts)
    fast.ef_update(torch.randn(5000), torch.randn(5000), 0.95, 0.7)

    kernels = sorted(
        name
        for name, value in vars(fast).items()
        if isinstance(value, jit.JITFunction) and name.endswith("_kernel")
    )
    if "--resources" in sys.argv:
        print_resources()
    report = {"compiled": sorted(set(COMPILED)), "kernels": kernels, "failed": FAILED}
    print(json.dumps(report))


def print_resources() -> None:
    tool = Path(triton.__file__).parent / "backends" / "nvidia" / "bin" / "cuobjdump"
    with tempfile.TemporaryDirectory() as tmp:
        for name, constexprs, cubin in CUBINS:
            path = Path(tmp) / f"{name}.cubin"
            path.write_bytes(cubin)
            usage = subprocess.run(
                [str(tool), "-res-usage", str(path)], capture_output=True, text=True, check=True
            ).stdout
            line = next(x.strip() for x in usage.splitlines() if x.strip().startswith("REG:"))
            fields = dict(f.split(":", 1) for f in line.split())
            print(
                f"{name} {constexprs}: {fields['REG']} registers, "
                f"LOCAL {fields['LOCAL']} B, SHARED {fields['SHARED']} B"
            )


if __name__ == "__main__":
    print(f"triton {triton.__version__}", flush=True)
    main()
