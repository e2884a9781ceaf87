"""One-shot post-training pruning, spx vs llmcompressor, on the same tiny LLaMA (issue 18).

    bash benchmarks/posttrain/setup.sh            # once: .venv-llmc with llmcompressor
    PYTHONPATH=. .venv/bin/python benchmarks/posttrain/bench_posttrain.py [--threads 1]

1. Builds a tiny LLaMA-style model from a config (no download), trains it briefly on the
   byte corpus (workers/corpus.py) so that pruning has something to lose, and saves it
   with ``save_pretrained``; draws a fixed calibration set (sequences of the train split,
   seeded) and saves it.
2. Interleaved, round by round (a warm-up round, then ``--repeats`` timed ones, medians):
   spx's ``prune_model`` (magnitude, Wanda, SparseGPT) in this process, and llmcompressor's
   ``WandaPruningModifier`` / ``SparseGPTModifier`` in a long-lived job server under
   ``.venv-llmc/bin/python`` (llmc_side.py), at 50 % unstructured and 2:4, with the same
   calibration tokens, calibration batch size, SparseGPT block size and dampening, passed
   explicitly to both. Only one side runs at a time.
3. Every pruned model, whichever library pruned it, is scored here by one perplexity
   function on the same fixed val windows, and its block Linear layers are checked for the
   asked sparsity (and the 2:4 pattern); the head and embeddings must be untouched.
4. SparseGPT's time and peak memory on a 4-block width-512 model (``--wide-2-4`` adds
   2:4), each run in a fresh process so the peak resident-set growth during pruning is its
   own; spx's Wanda on the same passes (no Hessian) is the reference.

Time is the pruning call alone (``prune_model`` / ``oneshot``), as wall and as the
process's CPU seconds: calibration forward passes, statistics, the per-layer solves (also
reported on their own), and for llmcompressor also its dataloader, the torch.fx tracing of
the model into per-layer subgraphs and the propagation passes. Model loading, process
start and imports are excluded on both sides, and each side's model is settled first
(weights copied into ordinary memory, one forward pass).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn import functional as F

from spx.workers import corpus, oneshot
from spx.workers.oneshot import Recipe, calibration_identity, prune_model
from spx.workers.taskbase import windows

sys.path.insert(0, str(Path(__file__).resolve().parent))
from rss import PeakRSS  # noqa: E402

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
LLMC_PYTHON = ROOT / ".venv-llmc" / "bin" / "python"

TINY = {
    "hidden_size": 128,
    "num_hidden_layers": 4,
    "num_attention_heads": 4,
    "num_key_value_heads": 4,
    "intermediate_size": 352,
    "vocab_size": 256,
    "max_position_embeddings": 256,
    "tie_word_embeddings": False,
}
WIDE = {**TINY, "hidden_size": 512, "num_attention_heads": 8, "num_key_value_heads": 8,
        "intermediate_size": 1376}  # fmt: skip


@dataclass(frozen=True)
class Case:
    """One row of the table: an spx recipe and the llmcompressor job it is compared with
    (None for magnitude, which is spx's baseline only)."""

    label: str
    structure: str
    recipe: Recipe
    llmc: str | None  # "wanda" | "sparsegpt"

    @property
    def nm(self) -> str:
        return "2:4" if self.recipe.nm else "0:0"


def cases(block: int, damp: float) -> list[Case]:
    half, nm = 0.5, (2, 4)
    return [
        Case("magnitude", "50 %", Recipe("magnitude", half), None),
        Case("magnitude", "2:4", Recipe("magnitude", half, nm=nm), None),
        Case("wanda", "50 %", Recipe("wanda", half), "wanda"),
        Case("wanda", "2:4", Recipe("wanda", half, nm=nm), "wanda"),
        Case("sparsegpt mask=row", "50 %",
             Recipe("sparsegpt", half, block=block, damp=damp, mask="row"), "sparsegpt"),
        Case("sparsegpt mask=block", "50 %",
             Recipe("sparsegpt", half, block=block, damp=damp, mask="block"), "sparsegpt"),
        Case("sparsegpt", "2:4",
             Recipe("sparsegpt", half, nm=nm, block=block, damp=damp), "sparsegpt"),
    ]  # fmt: skip


FIELDS = ("wall_s", "cpu_s", "solve_s", "solve_cpu_s", "trace_cpu_s")

# ---------------------------------------------------------------- model, data, metric


def llama(shape: dict[str, Any], seed: int) -> Any:  # a transformers PreTrainedModel
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    return LlamaForCausalLM(LlamaConfig(**shape)).float()


def quiet() -> None:
    from transformers.utils import logging

    logging.disable_progress_bar()


def load(folder: Path, settle_on: Tensor | None = None) -> nn.Module:
    """The model in ``folder``. With ``settle_on``, as llmc_side.py's jobs do before their
    timer starts: the weights copied into ordinary memory (the load may leave them mapped
    from the file) and one forward pass on that batch, so neither side's timing or memory
    counts first-touch costs."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(
        folder, local_files_only=True, trust_remote_code=False, dtype=torch.float32
    ).eval()
    if settle_on is not None:
        with torch.no_grad():
            for p in model.parameters():
                p.data = p.data.clone()
            model(input_ids=settle_on)
    return model


def train(model: nn.Module, data: np.ndarray, steps: int, seed: int, ctx: int) -> list[float]:
    """A few hundred AdamW steps on random train windows (warm-up, then cosine)."""
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, betas=(0.9, 0.95), weight_decay=0.1)
    warm = max(1, steps // 20)

    def lr_at(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * (step - warm) / max(1, steps - warm)))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_at)
    model.train()
    losses = []
    for step in range(steps):
        x, y = windows(data, torch.randint(len(data) - ctx - 1, (16,), generator=gen), ctx)
        loss = F.cross_entropy(model(input_ids=x).logits.flatten(0, 1), y.flatten())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        losses.append(loss.item())
        if step % 50 == 0 or step == steps - 1:
            print(f"  train step {step:4d}  loss {loss.item():.3f}", flush=True)
    model.eval()
    return losses


def calibration(data: np.ndarray, samples: int, seq_len: int, seed: int) -> Tensor:
    """``samples`` windows of ``seq_len`` tokens of the train split at seeded offsets."""
    gen = torch.Generator().manual_seed(seed)
    starts = torch.randint(len(data) - seq_len - 1, (samples,), generator=gen)
    return windows(data, starts, seq_len)[0]


@torch.no_grad()
def perplexity(model: nn.Module, val: np.ndarray, ctx: int, count: int) -> float:
    """exp(mean next-token NLL) over ``count`` evenly spaced val windows (the scheme of
    hf-causal-lm's ``evaluate``): the same tokens for every model scored."""
    starts = torch.linspace(0, len(val) - ctx - 2, count).long()
    total = 0.0
    for chunk in starts.split(16):
        x, y = windows(val, chunk, ctx)
        logits = model(input_ids=x).logits
        total += float(F.cross_entropy(logits.flatten(0, 1), y.flatten(), reduction="sum"))
    return math.exp(total / (count * ctx))


def block_linears(model: nn.Module) -> dict[str, Tensor]:
    return {
        f"{name}.weight": m.weight.detach()
        for name, m in model.named_modules()
        if isinstance(m, nn.Linear) and ".layers." in name
    }


def outside(model: nn.Module) -> dict[str, Tensor]:
    """The weights no method may touch: embeddings, head, norms."""
    inside = set(block_linears(model))
    return {k: v.detach() for k, v in model.state_dict().items() if k not in inside}


def check(model: nn.Module, dense_outside: dict[str, Tensor], nm: bool) -> dict[str, Any]:
    """Sparsity of every block Linear, the 2:4 pattern where asked, the rest untouched."""
    weights = block_linears(model)
    fractions = [float((w == 0).float().mean()) for w in weights.values()]
    pattern = all(
        bool(((w.reshape(w.shape[0], -1, 4) == 0).sum(-1) >= 2).all()) for w in weights.values()
    )
    same = all(torch.equal(v, model.state_dict()[k]) for k, v in dense_outside.items())
    return {
        "layers": len(weights),
        "min": min(fractions),
        "max": max(fractions),
        "pattern_2_4": pattern if nm else None,
        "outside_untouched": same,
    }


def agreement(ours: dict[str, Tensor], theirs: dict[str, Tensor]) -> dict[str, float]:
    """How alike two pruned models' block weights are: the fraction of weights pruned (or
    kept) by both, and ‖W_spx − W_llmc‖ / ‖W_llmc‖ over all block Linear weights."""
    same = total = 0
    diff = norm = 0.0
    for name, b in theirs.items():
        a = ours[name]
        same += int(((a == 0) == (b == 0)).sum())
        total += a.numel()
        diff += float(((a - b) ** 2).sum())
        norm += float((b**2).sum())
    return {"mask_agreement": same / total, "weight_rel_diff": math.sqrt(diff / norm)}


def digest(model: nn.Module) -> str:
    h = hashlib.sha256()
    for _, w in sorted(block_linears(model).items()):
        h.update(w.contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


# ---------------------------------------------------------------- the llmcompressor side


class Peer:
    """The llmc_side.py job server: one job at a time, answers on its stdout."""

    def __init__(self, python: Path, threads: int, log: Path) -> None:
        self.log = open(log, "w")  # noqa: SIM115 (closed in close())
        self.proc = subprocess.Popen(
            [str(python), str(HERE / "llmc_side.py"), "--serve", "--threads", str(threads)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.log,
            text=True,
            env={**os.environ, "TOKENIZERS_PARALLELISM": "false", "PYTHONPATH": ""},
        )

    def run(self, job: dict[str, Any]) -> dict[str, Any]:
        assert self.proc.stdin and self.proc.stdout
        self.proc.stdin.write(json.dumps(job) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"llmc_side.py exited; see {self.log.name}")
        answer = json.loads(line)
        if not answer.get("ok"):
            raise RuntimeError(f"llmc_side.py failed: {answer.get('error')}")
        return answer

    def close(self) -> None:
        if self.proc.stdin:
            self.proc.stdin.close()
        self.proc.wait(timeout=60)
        self.log.close()


def peer_versions(python: Path) -> dict[str, str]:
    out = subprocess.run(
        [str(python), str(HERE / "llmc_side.py"), "--versions"],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONPATH": ""},
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def load_pruned(folder: Path, weights: Path) -> nn.Module:
    from safetensors.torch import load_file

    model = load(folder)
    state = load_file(str(weights))
    model.load_state_dict(state, strict=True)
    return model


# ---------------------------------------------------------------- timing, memory

_SOLVE = {"wall": 0.0, "cpu": 0.0}


def _timed_layer_mask(*args: Any, _inner: Any = oneshot._layer_mask, **kwargs: Any) -> Tensor:
    start, cpu = time.perf_counter(), time.process_time()
    try:
        return _inner(*args, **kwargs)
    finally:
        _SOLVE["wall"] += time.perf_counter() - start
        _SOLVE["cpu"] += time.process_time() - cpu


# prune_model looks its per-layer step up by name at call time: timing it there splits the
# wall time into the per-layer solve and everything else (the calibration passes).
oneshot._layer_mask = _timed_layer_mask  # type: ignore[assignment]


def spx_prune(model: nn.Module, batches: list[Tensor], recipe: Recipe) -> dict[str, float]:
    """spx's pruning call, timed: wall and CPU seconds, and the per-layer part."""
    _SOLVE.update(wall=0.0, cpu=0.0)
    start, cpu = time.perf_counter(), time.process_time()
    prune_model(model, batches, recipe)
    return {
        "wall_s": time.perf_counter() - start,
        "cpu_s": time.process_time() - cpu,
        "solve_s": _SOLVE["wall"],
        "solve_cpu_s": _SOLVE["cpu"],
        "trace_cpu_s": 0.0,  # spx traces nothing
    }


def wide_child(args: argparse.Namespace) -> None:
    """In a fresh process: one recipe on the width-512 model; its timing and memory, JSON."""
    torch.set_num_threads(args.threads)
    quiet()
    batches = list(torch.load(args.calib).split(args.calib_batch))
    model = load(Path(args.wide_child), settle_on=batches[0])
    nm = (2, 4) if args.wide_nm else None
    recipe = Recipe(args.wide_method, 0.5, nm=nm, block=args.block, damp=args.damp)
    with PeakRSS() as rss:
        timing = spx_prune(model, batches, recipe)
    print(json.dumps({**timing, "peak_delta_mib": rss.delta_mib}))


def hessian_sizes(shape: dict[str, Any]) -> dict[str, float]:
    """MiB of one float64 Gram matrix (in x in) of the widest layer, and of one block's."""
    h, i = shape["hidden_size"], shape["intermediate_size"]
    one = max(h, i) ** 2 * 8 / 2**20
    block = (6 * h * h + i * i) * 8 / 2**20  # q, k, v, o, gate, up: h-wide inputs; down: i
    return {"widest_layer_mib": one, "block_mib": block}


# ---------------------------------------------------------------- the run


def machine() -> str:
    model = platform.processor() or "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{model}, {os.cpu_count()} logical CPUs, Python {platform.python_version()}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, help="kept; reuses a trained model there")
    parser.add_argument("--data-dir", type=Path, default=ROOT / ".spx" / "data")
    parser.add_argument("--threads", type=int, default=1, help="torch threads, both sides")
    parser.add_argument("--train-steps", type=int, default=300)
    parser.add_argument("--samples", type=int, default=64, help="calibration sequences")
    parser.add_argument("--seq-len", type=int, default=128)
    parser.add_argument("--calib-batch", type=int, default=8, help="sequences per batch")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--eval-windows", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--warmup", type=int, default=1)
    # llmcompressor's SparseGPTModifier defaults, passed to both sides explicitly
    parser.add_argument("--block", type=int, default=128)
    parser.add_argument("--damp", type=float, default=0.01)
    parser.add_argument("--llmc-python", type=Path, default=LLMC_PYTHON)
    parser.add_argument("--no-wide", action="store_true", help="skip the width-512 part")
    parser.add_argument("--wide-2-4", action="store_true", help="width-512 at 2:4 as well")
    parser.add_argument("--json", type=Path, help="write every number here too")
    parser.add_argument("--wide-child", help=argparse.SUPPRESS)
    parser.add_argument("--wide-nm", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--wide-method", default="sparsegpt", help=argparse.SUPPRESS)
    parser.add_argument("--calib", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.wide_child:
        wide_child(args)
        return
    if not args.llmc_python.is_file():
        sys.exit(f"--llmc-python: {args.llmc_python} missing; run benchmarks/posttrain/setup.sh")

    torch.set_num_threads(args.threads)
    quiet()
    work = args.workdir or Path(tempfile.mkdtemp(prefix="spx-posttrain-"))
    work.mkdir(parents=True, exist_ok=True)
    train_bytes, val_bytes = corpus.load(args.data_dir)
    import transformers

    results: dict[str, Any] = {
        "machine": machine(),
        "threads": args.threads,
        "spx_side": {"torch": torch.__version__, "transformers": transformers.__version__},
        "llmc_side": peer_versions(args.llmc_python),
        "args": {k: str(v) for k, v in vars(args).items()},
    }
    print(f"workdir {work}\n{results['machine']}; threads {args.threads}", flush=True)

    # 1. the trained tiny model and the calibration set
    folder = work / "tiny"
    if not (folder / "config.json").is_file():
        model = llama(TINY, args.seed)
        print(f"training the tiny model ({args.train_steps} steps)", flush=True)
        t = time.perf_counter()
        losses = train(model, train_bytes, args.train_steps, args.seed, args.seq_len)
        results["train"] = {"steps": args.train_steps, "s": time.perf_counter() - t,
                            "last_loss": statistics.mean(losses[-20:])}  # fmt: skip
        model.save_pretrained(folder)
    calib = calibration(train_bytes, args.samples, args.seq_len, args.seed)
    calib_path = work / "calib.pt"
    torch.save(calib, calib_path)
    batches = list(calib.split(args.calib_batch))
    ident = calibration_identity(batches)
    results["calibration"] = {"digest": ident.digest, "samples": ident.samples,
                              "seq_len": ident.seq_len, "batch": args.calib_batch}  # fmt: skip
    dense = load(folder)
    dense_outside = outside(dense)
    eval_tokens = args.eval_windows * args.seq_len
    results["dense_ppl"] = perplexity(dense, val_bytes, args.seq_len, args.eval_windows)
    results["eval"] = {"windows": args.eval_windows, "tokens": eval_tokens}
    print(f"dense val ppl {results['dense_ppl']:.4f} on {eval_tokens} val tokens", flush=True)
    del dense

    # 2. interleaved runs
    table = cases(args.block, args.damp)
    peer = Peer(args.llmc_python, args.threads, work / "llmc_side.log")
    times: dict[str, list[dict[str, float]]] = {}
    ppl: dict[str, float] = {}
    digests: dict[str, set[str]] = {}
    checks: dict[str, dict[str, Any]] = {}
    weights: dict[str, dict[str, Tensor]] = {}

    def record(key: str, model: nn.Module, timing: dict[str, float], timed: bool, nm: bool):
        d = digest(model)
        if key not in ppl:  # the first run is scored; later runs must be the same weights
            ppl[key] = perplexity(model, val_bytes, args.seq_len, args.eval_windows)
            checks[key] = check(model, dense_outside, nm)
            weights[key] = {k: w.clone() for k, w in block_linears(model).items()}
        digests.setdefault(key, set()).add(d)
        if timed:
            times.setdefault(key, []).append(timing)
        wall, cpu, layer = timing["wall_s"], timing["cpu_s"], timing["solve_cpu_s"]
        print(f"  {key:34s} wall {wall:7.3f} s  cpu {cpu:7.3f} s  per-layer cpu {layer:7.3f} s"
              f"  ppl {ppl[key]:.4f}", flush=True)  # fmt: skip

    def median(key: str, field: str) -> float:
        return statistics.median(t[field] for t in times[key])

    try:
        llmc_jobs = {(c.llmc, c.nm) for c in table if c.llmc}
        for rnd in range(args.warmup + args.repeats):
            timed = rnd >= args.warmup
            print(f"round {rnd + 1}/{args.warmup + args.repeats}"
                  f"{'' if timed else ' (warm-up)'}", flush=True)  # fmt: skip
            done: set[tuple[str | None, str]] = set()
            for case in table:
                model = load(folder, settle_on=batches[0])
                timing = spx_prune(model, batches, case.recipe)
                record(f"spx {case.label} {case.structure}", model, timing, timed, case.nm != "0:0")
                job_key = (case.llmc, case.nm)
                if case.llmc is None or job_key in done or job_key not in llmc_jobs:
                    continue
                done.add(job_key)
                out = work / f"llmc-{case.llmc}-{case.nm.replace(':', '')}.safetensors"
                job = {"model": str(folder), "calib": str(calib_path), "method": case.llmc,
                       "sparsity": case.recipe.sparsity, "mask_structure": case.nm,
                       "block": args.block, "damp": args.damp,
                       "batch_size": args.calib_batch, "out": str(out)}  # fmt: skip
                answer = peer.run(job)
                key = f"llmc {case.llmc} {case.structure}"
                record(key, load_pruned(folder, out), answer, timed, case.nm != "0:0")
    finally:
        peer.close()

    rows = []
    for case in table:
        spx_key = f"spx {case.label} {case.structure}"
        llmc_key = f"llmc {case.llmc} {case.structure}" if case.llmc else None
        row = {
            "method": case.label,
            "structure": case.structure,
            "spx_ppl": ppl[spx_key],
            **{f"spx_{f}": median(spx_key, f) for f in FIELDS},
            "spx_runs": times[spx_key],
            "spx_check": checks[spx_key],
            "spx_deterministic": len(digests[spx_key]) == 1,
        }
        if llmc_key:
            row |= {
                "llmc_ppl": ppl[llmc_key],
                **{f"llmc_{f}": median(llmc_key, f) for f in FIELDS},
                "llmc_runs": times[llmc_key],
                **agreement(weights[spx_key], weights[llmc_key]),
                "llmc_check": checks[llmc_key],
                "llmc_deterministic": len(digests[llmc_key]) == 1,
            }
        rows.append(row)
    results["rows"] = rows

    # 4. the width-512 model, each side in a fresh process
    if not args.no_wide:
        results["wide"] = wide(args, work, calib_path)

    print()
    print(report(results))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


def wide(args: argparse.Namespace, work: Path, calib_path: Path) -> dict[str, Any]:
    """Each run in a fresh process, so its peak resident-set growth is its own. Wanda (no
    Hessian) on spx is the reference: what the calibration passes alone take."""
    folder = work / "wide"
    if not (folder / "config.json").is_file():
        llama(WIDE, args.seed).save_pretrained(folder)
    out: dict[str, Any] = {"shape": WIDE, "hessians": hessian_sizes(WIDE), "runs": []}
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    plan = [("sparsegpt", False, "spx"), ("sparsegpt", False, "llmc")]
    if args.wide_2_4:
        plan += [("sparsegpt", True, "spx"), ("sparsegpt", True, "llmc")]
    plan.append(("wanda", False, "spx"))
    for method, nm, side in plan:
        structure = "2:4" if nm else "50 %"
        print(f"width-512 {method} {structure}: {side}", flush=True)
        if side == "spx":
            cmd = [sys.executable, __file__, "--wide-child", str(folder), "--calib"]
            cmd += [str(calib_path), "--wide-method", method, "--threads", str(args.threads)]
            cmd += ["--calib-batch", str(args.calib_batch), "--block", str(args.block)]
            cmd += ["--damp", str(args.damp)] + (["--wide-nm"] if nm else [])
            done = subprocess.run(cmd, capture_output=True, text=True, check=True, env=env)
            timing = json.loads(done.stdout.strip().splitlines()[-1])
        else:
            peer = Peer(args.llmc_python, args.threads, work / f"llmc_wide_{int(nm)}.log")
            try:
                job = {"model": str(folder), "calib": str(calib_path), "method": method,
                       "sparsity": 0.5, "mask_structure": "2:4" if nm else "0:0",
                       "block": args.block, "damp": args.damp, "batch_size": args.calib_batch,
                       "out": str(work / f"llmc-wide-{int(nm)}.safetensors")}  # fmt: skip
                timing = peer.run(job)
            finally:
                peer.close()
        print(f"  {timing}", flush=True)
        out["runs"].append({"method": method, "structure": structure, "side": side, **timing})
    return out


# ---------------------------------------------------------------- the markdown


def report(r: dict[str, Any]) -> str:
    cal = r["calibration"]
    lines = [
        f"Machine: {r['machine']}; torch threads {r['threads']} on both sides.",
        f"spx side: torch {r['spx_side']['torch']}, transformers {r['spx_side']['transformers']}; "
        f"llmcompressor side: llmcompressor {r['llmc_side']['llmcompressor']}, "
        f"compressed-tensors {r['llmc_side']['compressed-tensors']}, "
        f"transformers {r['llmc_side']['transformers']}, torch {r['llmc_side']['torch']}.",
        f"Calibration: {cal['samples']} x {cal['seq_len']} train tokens (digest "
        f"{cal['digest']}), batches of {cal['batch']}; val: {r['eval']['windows']} windows, "
        f"{r['eval']['tokens']} tokens. Dense val ppl **{r['dense_ppl']:.4f}**.",
        "",
        "| method | structure | spx ppl | llmcompressor ppl | ppl ratio | spx wall s "
        "| llmcompressor wall s | time ratio |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for row in r["rows"]:
        if "llmc_ppl" in row:
            lines.append(
                f"| {row['method']} | {row['structure']} | {row['spx_ppl']:.4f} "
                f"| {row['llmc_ppl']:.4f} | {row['spx_ppl'] / row['llmc_ppl']:.4f} "
                f"| {row['spx_wall_s']:.3f} | {row['llmc_wall_s']:.3f} "
                f"| {row['spx_wall_s'] / row['llmc_wall_s']:.2f} |"
            )
        else:
            lines.append(
                f"| {row['method']} | {row['structure']} | {row['spx_ppl']:.4f} | – | – "
                f"| {row['spx_wall_s']:.3f} | – | – |"
            )
    lines += [
        "",
        "CPU seconds of the pruning call (each process's own CPU time over the same span, "
        "less sensitive to other jobs than wall time) and the CPU seconds of its per-layer "
        "part (`_layer_mask` in spx, `sparsify_weight` in llmcompressor: scores, mask, "
        "SparseGPT's factorization and updates); the rest is calibration (forward passes, "
        "statistics) and, in llmcompressor, tracing and propagation. Medians:",
        "",
        "| method | structure | spx CPU s | llmcompressor CPU s | CPU ratio "
        "| spx per-layer CPU s | llmcompressor per-layer CPU s | llmcompressor tracing CPU s |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for row in r["rows"]:
        if "llmc_ppl" in row:
            lines.append(
                f"| {row['method']} | {row['structure']} | {row['spx_cpu_s']:.3f} "
                f"| {row['llmc_cpu_s']:.3f} | {row['spx_cpu_s'] / row['llmc_cpu_s']:.2f} "
                f"| {row['spx_solve_cpu_s']:.3f} | {row['llmc_solve_cpu_s']:.3f} "
                f"| {row['llmc_trace_cpu_s']:.3f} |"
            )
        else:
            lines.append(
                f"| {row['method']} | {row['structure']} | {row['spx_cpu_s']:.3f} | – | – "
                f"| {row['spx_solve_cpu_s']:.3f} | – | – |"
            )
    lines += [
        "",
        "How alike the two libraries' pruned models are (all block Linear weights): the "
        "share of weights both pruned or both kept, and ‖W_spx − W_llmc‖ / ‖W_llmc‖:",
        "",
        "| method | structure | same mask | relative weight difference |",
        "|---|---|---:|---:|",
    ]
    for row in r["rows"]:
        if "mask_agreement" in row:
            lines.append(
                f"| {row['method']} | {row['structure']} | {100 * row['mask_agreement']:.3f} % "
                f"| {row['weight_rel_diff']:.2e} |"
            )
    lines += ["", "Checks (sparsity of the block Linear layers, min–max):", ""]
    shown: set[str] = set()
    for row in r["rows"]:
        for side in ("spx", "llmc"):
            c = row.get(f"{side}_check")
            name = f"{side} {row['method'] if side == 'spx' else row['method'].split()[0]}"
            if not c or f"{name} {row['structure']}" in shown:
                continue
            shown.add(f"{name} {row['structure']}")
            extra = "" if c["pattern_2_4"] is None else f", 2:4 pattern {c['pattern_2_4']}"
            lines.append(
                f"- {name} {row['structure']}: {c['layers']} layers, "
                f"{100 * c['min']:.2f}–{100 * c['max']:.2f} % zeros{extra}, "
                f"embeddings/head/norms untouched {c['outside_untouched']}, "
                f"same weights every round {row[f'{side}_deterministic']}"
            )
    if "wide" in r:
        w = r["wide"]
        hs = w["hessians"]
        lines += [
            "",
            f"SparseGPT on the width-512 model (hidden {w['shape']['hidden_size']}, "
            f"{w['shape']['num_hidden_layers']} blocks, intermediate "
            f"{w['shape']['intermediate_size']}, random init), same calibration tokens; "
            f"one float64 Gram matrix of the widest layer is {hs['widest_layer_mib']:.1f} MiB, "
            f"one block's seven are {hs['block_mib']:.1f} MiB:",
            "",
            "| method | side | wall s | CPU s | per-layer CPU s | peak RSS growth MiB |",
            "|---|---|---:|---:|---:|---:|",
        ]
        for run in w["runs"]:
            name = "spx" if run["side"] == "spx" else "llmcompressor"
            lines.append(
                f"| {run['method']} {run['structure']} | {name} | {run['wall_s']:.2f} "
                f"| {run['cpu_s']:.2f} | {run['solve_cpu_s']:.2f} | {run['peak_delta_mib']:.1f} |"
            )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
