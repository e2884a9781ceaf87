"""2:4 semi-structured sparse matmul against dense, over transformer shapes and batch sizes.

    python3 benchmarks/gpu/bench_semistructured.py [--dry-run]

For each weight shape (out x in, as ``nn.Linear`` holds it) and each number of tokens, the
same 2:4-masked fp16 weight multiplies the same activations once dense
(``F.linear(x, w)``) and once through ``torch.sparse.to_sparse_semi_structured``
(spx.kernels.semistructured). Times are CUDA-event medians over ``--repeats`` calls after
warm-up. Prints a markdown table with the speedup (dense / sparse) and the largest
difference between the two outputs, including the shapes where sparse loses. Without a
GPU of compute capability >= 8.0 only the dense column is filled (``--dry-run`` uses tiny
sizes on whatever device there is).
"""

from __future__ import annotations

import argparse
import statistics

import torch
from torch.nn import functional as F

from spx.kernels.nm import nm_mask
from spx.kernels.semistructured import semi_structured_available, to_semi_structured

# (out, in) of the linear layers of a 4096-wide Llama-style block and a 1024-wide GPT.
SHAPES = [(4096, 4096), (11008, 4096), (4096, 11008), (3072, 768), (768, 3072), (1024, 1024)]
TOKENS = [1, 16, 128, 1024, 4096, 16384]
DRY_SHAPES = [(64, 64), (128, 64)]
DRY_TOKENS = [8, 32]


def timed_ms(fn, repeats: int, cuda: bool) -> float:
    for _ in range(3):
        fn()
    if not cuda:
        import time

        samples = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            fn()
            samples.append(1000 * (time.perf_counter() - t0))
        return statistics.median(samples)
    torch.cuda.synchronize()
    samples = []
    for _ in range(repeats):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        samples.append(start.elapsed_time(end))
    return statistics.median(samples)


def row(out_f: int, in_f: int, tokens: int, repeats: int, device: str) -> str:
    cuda = device == "cuda"
    dtype = torch.float16 if cuda else torch.float32
    gen = torch.Generator(device=device).manual_seed(0)
    w = torch.randn(out_f, in_f, device=device, dtype=dtype, generator=gen)
    w = w * nm_mask(w, 2, 4)
    x = torch.randn(tokens, in_f, device=device, dtype=dtype, generator=gen)
    dense = timed_ms(lambda: F.linear(x, w), repeats, cuda)
    tflops = 2 * out_f * in_f * tokens / (dense * 1e-3) / 1e12
    if not (cuda and semi_structured_available()):
        return f"| {out_f}x{in_f} | {tokens} | {dense:.4f} | {tflops:.1f} | n/a | n/a | n/a |"
    try:
        sw = to_semi_structured(w)
        diff = float((F.linear(x, sw) - F.linear(x, w)).abs().max())
        sparse = timed_ms(lambda: F.linear(x, sw), repeats, cuda)
    except (RuntimeError, ValueError) as err:  # a shape the backend refuses: say so
        reason = str(err).splitlines()[0][:80]
        return f"| {out_f}x{in_f} | {tokens} | {dense:.4f} | {tflops:.1f} | refused: {reason} | | |"
    return (
        f"| {out_f}x{in_f} | {tokens} | {dense:.4f} | {tflops:.1f} | {sparse:.4f} "
        f"| {dense / sparse:.2f}x | {diff:.2e} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dry-run", action="store_true", help="tiny sizes, any device")
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    shapes, tokens = (DRY_SHAPES, DRY_TOKENS) if args.dry_run else (SHAPES, TOKENS)
    repeats = 3 if args.dry_run else args.repeats
    where = torch.cuda.get_device_name() if device == "cuda" else "CPU"
    backend = "available" if semi_structured_available() else "unavailable"
    print(f"2:4 semi-structured vs dense F.linear on {where} (semi-structured {backend})")
    print("| weight (out x in) | tokens | dense ms | dense TFLOP/s | 2:4 ms | speedup | max diff |")
    print("|---|---|---|---|---|---|---|")
    for out_f, in_f in shapes:
        for n in tokens:
            print(row(out_f, in_f, n, repeats, device), flush=True)


if __name__ == "__main__":
    main()
