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
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import torch

from spx.kernels.compress import SparseLoCoCompressor


def layer_shapes(hidden: int) -> list[tuple[int, ...]]:
    d = hidden
    return [(d, d)] * 4 + [(4 * d, d), (d, 4 * d), (d,), (d,)]


def make_gradient(params: int, hidden: int, seed: int = 0) -> list[torch.Tensor]:
    per_layer = sum(torch.Size(s).numel() for s in layer_shapes(hidden))
    layers = max(1, round(params / per_layer))
    gen = torch.Generator().manual_seed(seed)
    return [torch.randn(s, generator=gen) for _ in range(layers) for s in layer_shapes(hidden)]


def best_time(fn: Callable[[], object], repeats: int) -> float:
    fn()  # warm-up: allocator, thread pool
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def run(params: int, hidden: int, repeats: int, comp: SparseLoCoCompressor) -> str:
    grads = make_gradient(params, hidden)
    numel = sum(g.numel() for g in grads)
    payloads = [comp.compress(g)[0] for g in grads]
    wire = sum(p.nbytes for p in payloads)
    dense = 4 * numel

    t_clone = best_time(lambda: [g.clone() for g in grads], repeats)
    t_comp = best_time(lambda: [comp.compress(g) for g in grads], repeats)
    t_decomp = best_time(lambda: [comp.decompress(p) for p in payloads], repeats)
    rows = [
        ("torch.clone", t_clone),
        ("compress", t_comp),
        ("decompress", t_decomp),
        ("compress + decompress", t_comp + t_decomp),
    ]
    lines = [
        f"params {numel:,} in {len(grads)} tensors (hidden {hidden}), "
        f"topk {comp.topk}/{comp.chunk}x{comp.chunk}, {comp.bits}-bit, "
        f"{torch.get_num_threads()} torch threads, best of {repeats}",
        "",
        "| step | seconds | x clone |",
        "|---|---:|---:|",
    ]
    lines += [f"| {name} | {t:.3f} | {t / t_clone:.1f} |" for name, t in rows]
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
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    comp = SparseLoCoCompressor(topk=args.topk, chunk=args.chunk, bits=args.bits)
    print(run(args.params, args.hidden, args.repeats, comp))


if __name__ == "__main__":
    main()
