"""Time SparseLoCo compress + decompress of a pseudo-gradient against one clone of it.

Run by hand, not a test::

    PYTHONPATH=. .venv/bin/python benchmarks/bench_compress.py --params 100_000_000

The pseudo-gradient is a list of tensors shaped like a transformer of width ``--hidden``
(per layer four d x d attention matrices, d x 4d and 4d x d MLP matrices and two norm
vectors) with as many layers as it takes to reach ``--params``. Prints a markdown table:
best-of-``--repeats`` wall time of each step, its ratio to one ``torch.clone`` of the same
data, and the wire bytes (``WirePayload.nbytes``) against dense fp32. On a shared machine
pass ``--threads 1``: with busy cores every multi-threaded op can wait a scheduler tick,
which swamps the small ops of decompress.

With ``--device cuda`` the same steps run on the GPU twice in one process, once through
the torch references (``SPX_KERNELS=reference``) and once through the Triton fast paths
(``SPX_KERNELS=triton``), side by side; one ``torch.clone`` there is one read and one write
of the tensor at the GPU's memory bandwidth, the yardstick of the issue's 5x goal.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable

import torch

from spx.kernels.compress import SparseLoCoCompressor


def layer_shapes(hidden: int) -> list[tuple[int, ...]]:
    d = hidden
    return [(d, d)] * 4 + [(4 * d, d), (d, 4 * d), (d,), (d,)]


def make_gradient(params: int, hidden: int, device: str, seed: int = 0) -> list[torch.Tensor]:
    per_layer = sum(torch.Size(s).numel() for s in layer_shapes(hidden))
    layers = max(1, round(params / per_layer))
    gen = torch.Generator().manual_seed(seed)
    shapes = [s for _ in range(layers) for s in layer_shapes(hidden)]
    return [torch.randn(s, generator=gen).to(device) for s in shapes]


def best_time(fn: Callable[[], object], repeats: int, device: str) -> float:
    def timed() -> float:
        start = time.perf_counter()
        fn()
        if device == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - start

    timed()  # warm-up: allocator, thread pool, kernel compilation
    return min(timed() for _ in range(repeats))


def time_steps(
    grads: list[torch.Tensor], comp: SparseLoCoCompressor, repeats: int, device: str, kernels: str
) -> dict[str, float]:
    """Seconds per step with ``SPX_KERNELS=kernels``."""
    os.environ["SPX_KERNELS"] = kernels
    payloads = [comp.compress(g)[0] for g in grads]
    t_comp = best_time(lambda: [comp.compress(g) for g in grads], repeats, device)
    t_decomp = best_time(lambda: [comp.decompress(p) for p in payloads], repeats, device)
    return {
        "compress": t_comp,
        "decompress": t_decomp,
        "compress + decompress": t_comp + t_decomp,
    }


def run(params: int, hidden: int, repeats: int, comp: SparseLoCoCompressor, device: str) -> str:
    grads = make_gradient(params, hidden, device)
    numel = sum(g.numel() for g in grads)
    payloads = [comp.compress(g)[0] for g in grads]
    wire = sum(p.nbytes for p in payloads)
    dense = 4 * numel

    t_clone = best_time(lambda: [g.clone() for g in grads], repeats, device)
    modes = ["reference", "triton"] if device == "cuda" else ["reference"]
    columns = {mode: time_steps(grads, comp, repeats, device, mode) for mode in modes}
    where = torch.cuda.get_device_name() if device == "cuda" else "CPU"
    lines = [
        f"params {numel:,} in {len(grads)} tensors (hidden {hidden}), "
        f"topk {comp.topk}/{comp.chunk}x{comp.chunk}, {comp.bits}-bit, on {where}, "
        f"{torch.get_num_threads()} torch threads, best of {repeats}; "
        f"torch.clone {t_clone:.4f} s",
        "",
        "| step | " + " | ".join(f"{m} s | {m} x clone" for m in modes) + " |",
        "|---|" + "---:|---:|" * len(modes),
    ]
    for step in columns[modes[0]]:
        cells = [f"{columns[m][step]:.4f} | {columns[m][step] / t_clone:.1f}" for m in modes]
        lines.append(f"| {step} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "| wire bytes | fp32 bytes | fp32 / wire | bits per param |",
        "|---:|---:|---:|---:|",
        f"| {wire:,} | {dense:,} | {dense / wire:.1f} | {8 * wire / numel:.3f} |",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", type=int, default=100_000_000)
    parser.add_argument("--hidden", type=int, default=1024)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--topk", type=int, default=64)
    parser.add_argument("--chunk", type=int, default=64)
    parser.add_argument("--bits", type=int, default=2)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    comp = SparseLoCoCompressor(topk=args.topk, chunk=args.chunk, bits=args.bits)
    print(run(args.params, args.hidden, args.repeats, comp, args.device))


if __name__ == "__main__":
    main()
