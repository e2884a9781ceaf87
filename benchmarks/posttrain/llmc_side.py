"""The llmcompressor side of bench_posttrain.py; runs under .venv-llmc/bin/python.

    .venv-llmc/bin/python benchmarks/posttrain/llmc_side.py --serve

A small job server so the driver can interleave spx and llmcompressor runs without paying
llmcompressor's import (or a fresh process) per run. It reads one JSON job per line on
stdin and answers one JSON line on stdout when the job is done; everything the libraries
print goes to stderr. A job:

    {"model": DIR, "calib": FILE.pt, "method": "wanda" | "sparsegpt", "sparsity": 0.5,
     "mask_structure": "0:0" | "2:4", "block": 128, "damp": 0.01, "batch_size": 8,
     "out": FILE.safetensors}

The model folder is loaded first and settled (its weights copied into ordinary memory, one
forward pass on the first calibration batch), not timed. ``wall_s`` (and ``cpu_s``, this process's
CPU time over the same span) is the ``oneshot`` call alone: the dataloader, the sequential
pipeline's tracing of the model into one subgraph per decoder layer, calibration, pruning
and propagation. ``solve_s`` / ``solve_cpu_s`` is the part spent in the per-layer
``sparsify_weight``, ``trace_cpu_s`` the torch.fx tracing, ``peak_delta_mib`` the resident
set's peak growth during the call (meaningful in a fresh server, which is how the driver
asks for it). The pruned weights are written as a plain state dict, not llmcompressor's
compressed format, so the driver's transformers loads them without compressed-tensors.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from rss import PeakRSS  # noqa: E402


class NoProcessor:
    """Stands in for a tokenizer: the calibration set is token ids already, and the model
    folder has none (byte-level tokens). Passing an object (not a path or None) keeps
    llmcompressor from loading a processor from the folder; the truncation collator never
    calls it."""

    def save_pretrained(self, *_: Any, **__: Any) -> None:
        pass


def run_job(job: dict[str, Any]) -> dict[str, Any]:
    from datasets import Dataset
    from llmcompressor import oneshot
    from llmcompressor.modifiers.pruning import SparseGPTModifier, WandaPruningModifier
    from safetensors.torch import save_file
    from transformers import AutoModelForCausalLM

    calib: torch.Tensor = torch.load(job["calib"])
    dataset = Dataset.from_dict({"input_ids": calib.tolist()})
    model = AutoModelForCausalLM.from_pretrained(
        job["model"], local_files_only=True, trust_remote_code=False, dtype=torch.float32
    ).eval()
    with torch.no_grad():  # as the driver does for spx: weights in memory, one forward
        for p in model.parameters():
            p.data = p.data.clone()
        model(input_ids=calib[: job["batch_size"]])
    common = {
        "sparsity": job["sparsity"],
        "mask_structure": job["mask_structure"],
        "targets": ["Linear"],
        "ignore": ["re:.*lm_head"],
    }
    if job["method"] == "sparsegpt":
        modifier = SparseGPTModifier(**common, block_size=job["block"], dampening_frac=job["damp"])
    elif job["method"] == "wanda":
        modifier = WandaPruningModifier(**common)
    else:
        raise ValueError(f"method: {job['method']!r} is not wanda or sparsegpt")
    solve = install_solve_timer()
    solve.update(wall=0.0, cpu=0.0, trace_wall=0.0, trace_cpu=0.0)
    with PeakRSS() as rss:
        start, cpu = time.perf_counter(), time.process_time()
        oneshot(
            model=model,
            processor=NoProcessor(),
            dataset=dataset,
            recipe=modifier,
            num_calibration_samples=len(dataset),
            max_seq_length=int(calib.shape[1]),
            batch_size=job["batch_size"],
            shuffle_calibration_samples=False,
            pipeline="sequential",
        )
        wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    state = {k: v.detach().contiguous().clone() for k, v in model.state_dict().items()}
    save_file(state, job["out"])
    return {
        "ok": True,
        "wall_s": wall,
        "cpu_s": cpu,
        "solve_s": solve["wall"],
        "solve_cpu_s": solve["cpu"],
        "trace_cpu_s": solve["trace_cpu"],
        "peak_delta_mib": rss.delta_mib,
        "out": job["out"],
    }


_SOLVE: dict[str, float] = {}


def install_solve_timer() -> dict[str, float]:
    """Wrap both modifiers' per-layer ``sparsify_weight`` (the mask and, for SparseGPT,
    the OBS solve), and the sequential pipeline's tracing, so the job can say how much of
    its time each takes."""
    if _SOLVE:
        return _SOLVE
    from llmcompressor.modifiers.pruning.sparsegpt import base as sgpt
    from llmcompressor.modifiers.pruning.wanda import base as wanda
    from llmcompressor.pipelines.sequential import pipeline

    for module, name, part in (
        (sgpt, "sparsify_weight", ""),
        (wanda, "sparsify_weight", ""),
        (pipeline, "trace_subgraphs", "trace_"),
    ):
        inner = getattr(module, name)

        def timed(*args: Any, _inner: Any = inner, _part: str = part, **kwargs: Any) -> Any:
            start, cpu = time.perf_counter(), time.process_time()
            try:
                return _inner(*args, **kwargs)
            finally:
                _SOLVE[f"{_part}wall"] += time.perf_counter() - start
                _SOLVE[f"{_part}cpu"] += time.process_time() - cpu

        setattr(module, name, timed)
    return _SOLVE


def serve(threads: int) -> None:
    torch.set_num_threads(threads)
    reply = sys.stdout
    for line in sys.stdin:
        if not line.strip():
            continue
        job = json.loads(line)
        try:
            with contextlib.redirect_stdout(sys.stderr):
                answer = run_job(job)
        except Exception as exc:  # the driver reports it and stops
            answer = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
        reply.write(json.dumps(answer) + "\n")
        reply.flush()


def versions() -> dict[str, str]:
    import compressed_tensors
    import llmcompressor
    import transformers

    return {
        "llmcompressor": llmcompressor.__version__,
        "compressed-tensors": compressed_tensors.__version__,
        "transformers": transformers.__version__,
        "torch": torch.__version__,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--serve", action="store_true", help="answer jobs on stdin")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--versions", action="store_true", help="print versions as JSON")
    args = parser.parse_args()
    if args.versions:
        print(json.dumps(versions()))
    elif args.serve:
        serve(args.threads)
    else:
        parser.error("give --serve or --versions")


if __name__ == "__main__":
    main()
