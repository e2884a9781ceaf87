"""The one training loop every trial runs, whatever its task or sparsity method.

Per step: the pruner may draw masks at init (``before_step``), the LR is set for the step's
schedule position, one forward/backward pass, the pruner sees this step's dense gradient
and updates masks when its schedule says so (``after_backward``), the optimizer steps under
the masks, masks are re-applied (``after_step``), N_t is recorded. Every sparsity method
plugs in through those hooks (see ``pruner.py``).

Every ``train.report_every`` steps (and at every mask update, so the realised schedule is
logged step by step) the loop evaluates and hands a metrics dict to the reporter. At every
mask update it also hands over the per-layer density table, when the reporter has an
``artifact`` method (:class:`TableReporter`). Checkpoints hold weights, optimizer state,
the pruner's state (masks, mask RNG, method state), RNG states and counters, and a run
resumed from one continues exactly as if it had never stopped.

The steps run through the trial's engine (``engine.py``): the loop's own autograd and
optimizer step, or DeepSpeed's engine (``engine: deepspeed``, ZeRO stage 0-2), with the
same hooks in the same order either way.

A multi-worker trial passes a :class:`~spx.workers.outer.Sync` (ALGORITHMS.md §1): the
same loop then calls its hooks (DDP's gradient mean after backward; the DiLoCo / SparseLoCo
outer step after every H-th step), seeds its data stream by rank, reports its comm metrics,
and checkpoints its state (θ_master, EF buffers, momentum). Only rank 0 evaluates and
reports; every rank follows rank 0's early-termination decision.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import torch
from torch import nn

from spx.errors import TrialError, TrialPruned
from spx.workers import checkpoint
from spx.workers.accounting import BACKWARD_FACTOR, Accountant
from spx.workers.config import TrialConfig
from spx.workers.distributed import Communicator
from spx.workers.engine import Engine, build_engine
from spx.workers.methods import build_pruner, method_class
from spx.workers.outer import Sync, build_sync
from spx.workers.pruner import Pruner
from spx.workers.schedules import lr_at
from spx.workers.tasks import Task
from spx.workers.warmstart import keep_zeros, load_weights

DENSITY_TABLE = "layer_density"


class Reporter(Protocol):
    def report(self, step: int, metrics: dict[str, float]) -> bool | None:
        """Take one report; returning False asks the trial to stop early (PRUNED)."""
        ...


class TableReporter(Reporter, Protocol):
    """A reporter that also takes tables (columns of equal length), e.g. the per-layer
    density at each mask update: columns step, layer, shape, numel, nnz, density.
    Successive tables of one ``name`` are meant to be appended into one artifact."""

    def artifact(self, step: int, name: str, table: dict[str, list]) -> None: ...


class ListReporter:
    """Keeps reports and tables in memory (tests, notebooks)."""

    def __init__(self) -> None:
        self.rows: list[tuple[int, dict[str, float]]] = []
        self.tables: list[tuple[int, str, dict[str, list]]] = []

    def report(self, step: int, metrics: dict[str, float]) -> None:
        self.rows.append((step, dict(metrics)))

    def artifact(self, step: int, name: str, table: dict[str, list]) -> None:
        self.tables.append((step, name, table))


@dataclass
class State:
    """Everything a trial needs to continue after a restart."""

    cfg: TrialConfig
    model: nn.Module
    optimizer: torch.optim.Optimizer
    pruner: Pruner
    accountant: Accountant
    generator: torch.Generator
    engine: Engine
    device: torch.device = torch.device("cpu")
    step: int = 0
    sync: Sync | None = None
    evaluated: tuple[int, dict[str, float]] | None = None
    """The step of the last evaluation and what it measured: the final metrics reuse it."""


def build_optimizer(cfg: TrialConfig, model: nn.Module) -> torch.optim.Optimizer:
    t = cfg.train
    params = list(model.parameters())
    # The fused kernels are faster everywhere, and on CPU they also avoid a slow path of
    # sqrt on the zeros a masked layer leaves in Adam's second moment (benchmarks/).
    fused = all(p.device.type in ("cpu", "cuda") for p in params)
    if t.optimizer == "sgd":
        return torch.optim.SGD(
            params, lr=t.lr, momentum=t.momentum, weight_decay=t.weight_decay, fused=fused
        )
    return torch.optim.AdamW(params, lr=t.lr, weight_decay=t.weight_decay, fused=fused)


_INIT_LOCK = threading.Lock()


def trial_device(cfg: TrialConfig) -> torch.device:
    """Where a trial trains: the GPU when this process sees one (Ray hides the GPUs from a
    worker that asked for none: ``resources.gpus_per_worker``), else the CPU. DeepSpeed
    runs here with its CPU accelerator (engine.py), so its trials stay on the CPU."""
    if cfg.engine == "torch" and torch.cuda.is_available():
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def on_device(batch: tuple, device: torch.device) -> tuple:
    """A batch's tensors on ``device`` (tasks build batches on the CPU)."""
    if device.type == "cpu":
        return batch
    return tuple(t.to(device, non_blocking=True) for t in batch)


def build_state(cfg: TrialConfig, task: Task, rank: int = 0, workers: int = 1) -> State:
    """A fresh trial state; ``rank`` picks a worker's own data shard (its data seed), and
    ``workers`` (the group's size) makes ``data/tokens`` and compute count every worker's."""
    device = trial_device(cfg)
    with _INIT_LOCK:  # init reads torch's global RNG; ranks may be threads of one process
        torch.manual_seed(cfg.train.seed)
        model = task.build_model(cfg)  # initialised on the CPU: same weights
        load_weights(cfg.init, model)  # init.from: every method starts from these (warmstart.py)
        model = model.to(device)
        pruner = build_pruner(cfg, model)
        keep_zeros(cfg.init, pruner)
    per_batch = task.tokens_per_batch(cfg)
    accountant = Accountant.build(
        model,
        pruner.masks,
        task.example_input(cfg).to(device),
        tokens_per_example=per_batch / cfg.train.batch_size,
        tokens_per_step=per_batch * workers,  # each worker trains on its own batch
    )
    generator = torch.Generator().manual_seed(cfg.train.seed + 1 + 1_000_003 * rank)
    optimizer = build_optimizer(cfg, model)
    if pruner.calibrates:  # post-training: prune the loaded weights (a resume restores them)
        pruner.calibrate(model, task, cfg, device)
    engine = build_engine(cfg, model, optimizer, pruner.masks)
    return State(cfg, model, optimizer, pruner, accountant, generator, engine, device=device)


def train(
    cfg: TrialConfig,
    task: Task,
    reporter: Reporter,
    checkpoint_dir: Path | None = None,
    comm: Communicator | None = None,
) -> dict[str, float]:
    """Train one trial to the pruner's ``total_steps`` (``train.steps`` for every method
    but lottery, whose rounds train on); return its final metrics. With ``comm`` this is
    one worker of a group that synchronises as ``cfg.comm`` says (module docstring)."""
    if comm is None:
        state = build_state(cfg, task)
    else:
        state = build_state(cfg, task, comm.rank, comm.world)
    try:
        return _run(state, task, reporter, checkpoint_dir, comm)
    finally:
        state.engine.close()


def _run(
    state: State,
    task: Task,
    reporter: Reporter,
    checkpoint_dir: Path | None,
    comm: Communicator | None,
) -> dict[str, float]:
    cfg = state.cfg
    total = state.pruner.total_steps
    if comm is not None:
        state.sync = build_sync(comm, cfg.comm, state.model, total)
    restored = checkpoint_dir is not None and restore(state, checkpoint_dir)
    if state.sync is not None:
        state.sync.check_step(state.step)
        state.sync.start(state.pruner.masks, fresh=not restored)
        state.engine.reload()
    batches = task.batches(cfg, state.generator)
    window: list[float] = []
    started = saved_at = time.perf_counter()
    while state.step < total:
        loss, changed = advance(state, task, next(batches))
        window.append(loss)
        # Ranks of a group must save at the same steps, so only a lone worker goes by time.
        waited = time.perf_counter() - saved_at if state.sync is None else 0.0
        if checkpoint_dir is not None and checkpoint_due(cfg, state.step, total, waited):
            save(state, checkpoint_dir)
            saved_at = time.perf_counter()
        due = state.step % cfg.train.report_every == 0 or state.step == total
        if due or changed:
            keep_going = _report(state, task, reporter, window, time.perf_counter() - started)
            if changed and _leads(state):
                _publish(reporter, state.step, DENSITY_TABLE, state.pruner.masks.table(state.step))
            if keep_going is False:  # early termination: keep what was learned, then stop
                if checkpoint_dir is not None:
                    save(state, checkpoint_dir)
                state.model.eval()
                raise TrialPruned(state.step, _final(state, task, cfg))
            window, started = [], time.perf_counter()
    state.model.eval()
    return _final(state, task, cfg)


def advance(state: State, task: Task, batch: tuple) -> tuple[float, bool]:
    """One optimizer step with every pruner hook; returns its loss and whether it was a
    mask-update step."""
    changed = state.pruner.before_step(state.step, state.optimizer)
    lr = lr_at(state.cfg.train, state.pruner.position(state.step))
    for group in state.optimizer.param_groups:
        group["lr"] = lr
    loss, updated = _train_step(state, task, batch)
    changed = changed or updated
    state.step += 1
    if state.sync is not None:
        state.sync.after_step(state.step, state.pruner.masks, changed)
    state.accountant.record_step()
    return loss, changed


def _train_step(state: State, task: Task, batch: tuple) -> tuple[float, bool]:
    state.model.train()
    state.optimizer.zero_grad(set_to_none=True)
    loss = task.loss(state.engine.module, on_device(batch, state.device))
    value = float(loss.detach())
    if not math.isfinite(value):
        raise TrialError(f"train/loss is {value} at step {state.step + 1}")
    state.engine.backward(loss)
    if state.sync is not None and state.engine.reduces_gradients:
        state.sync.reduced_by_engine()  # DeepSpeed averaged them: metered as DDP's mean
    elif state.sync is not None:
        state.sync.after_backward()  # DDP: every worker's pruner sees the mean gradient
    updated = state.pruner.after_backward(state.step, state.optimizer)  # masks may change
    state.engine.step()
    state.pruner.after_step()
    state.engine.after_step()  # ZeRO: the master copies follow the masks (engine.py)
    return value, updated


def _publish(reporter: Reporter, step: int, name: str, table: dict[str, list]) -> None:
    artifact = getattr(reporter, "artifact", None)
    if artifact is not None:
        artifact(step, name, table)


def _leads(state: State) -> bool:
    return state.sync is None or state.sync.rank == 0


def _report(
    state: State, task: Task, reporter: Reporter, window: list[float], elapsed: float
) -> bool:
    """Rank 0 evaluates and reports; every rank returns rank 0's keep-going decision."""
    keep_going = True
    if _leads(state):
        metrics = _metrics(state, task, state.cfg, window, elapsed)
        keep_going = reporter.report(state.step, metrics) is not False
    if state.sync is not None:
        keep_going = state.sync.keep_going(keep_going)
    return keep_going


def _metrics(
    state: State, task: Task, cfg: TrialConfig, window: list[float], elapsed: float
) -> dict[str, float]:
    state.model.eval()
    metrics = {
        "train/loss": sum(window) / len(window),
        "time/step_s": elapsed / len(window),
    }
    metrics.update(_evaluate(state, task, cfg))
    metrics.update(state.accountant.metrics())
    metrics.update(state.pruner.metrics())
    if state.sync is not None:
        metrics.update(state.sync.metrics())
    return metrics


def _evaluate(state: State, task: Task, cfg: TrialConfig) -> dict[str, float]:
    """The task's evaluation at this step, done once (a last report's is the final one)."""
    if state.evaluated is None or state.evaluated[0] != state.step:
        state.evaluated = (state.step, task.evaluate(state.model, cfg))
    return dict(state.evaluated[1])


def _final(state: State, task: Task, cfg: TrialConfig) -> dict[str, float]:
    final = _evaluate(state, task, cfg)
    final.update(state.accountant.metrics())
    final.update(state.pruner.metrics())
    if state.sync is not None:
        final.update(state.sync.metrics())
    if state.pruner.compacts and (state.sync is None or state.sync.rank == 0):
        final.update(_compaction(state, task, cfg))
    return final


LOOP_METRICS = (
    "train/loss",
    "time/step_s",
    "data/tokens",
    "model/sparsity",
    "model/nnz",
    "model/params",
    "model/params_avg",
    "model/flops",
    "model/flops_per_token",
    "model/collapsed_layers",
    "compute/train_flops",
)
COMM_METRICS = (
    "comm/bytes_sent",
    "comm/bytes_dense",
    "comm/bytes_received",
    "comm/compression",
    "comm/syncs",
    "comm/sync_bytes",
    "comm/sync_bits_per_param",
    "time/comm_s",
    "time/compute_s",
)
COMPACT_METRICS = (
    "compact/params",
    "compact/flops",
    "compact/params_ratio",
    "compact/flops_ratio",
    "compact/max_abs_diff",
)


def reported_metrics(cfg: TrialConfig, task: Task, workers: int = 1) -> set[str]:
    """The metric names a trial of ``cfg`` reports (its task's, the loop's, the comm and
    compaction ones where they apply)."""
    names = {*LOOP_METRICS, *task.eval_metrics}
    if workers > 1:
        names.update(COMM_METRICS)
    method = method_class(cfg.prune.method)
    if method.compacts:
        names.update(COMPACT_METRICS)
    names.update(method.reports)
    return names


def _compaction(state: State, task: Task, cfg: TrialConfig) -> dict[str, float]:
    """The compact subnetwork's parameters and FLOPs, and the largest difference between
    its outputs and the pruned full model's on a batch of real training inputs (the
    correctness check of OTO's subnet construction; ~1e-7 in float32)."""
    from spx.workers.compact import compact

    # A group pruner (oto, nodes) hands over its keep-vectors; others' zero rows are read.
    small, counts = compact(state.model, task.example_input(cfg).to(state.device), state.pruner)
    inputs = next(task.batches(cfg, torch.Generator().manual_seed(0)))[0].to(state.device)
    with torch.no_grad():
        diff = (small.eval()(inputs) - state.model.eval()(inputs)).abs().max()
    return {**counts.metrics(), "compact/max_abs_diff": float(diff)}


AUTO_FRACTION = 10
"""``checkpoint_every: auto`` saves every 1/AUTO_FRACTION of the trial's steps ..."""
AUTO_INTERVAL_S = 300.0
"""... and after AUTO_INTERVAL_S seconds without a save, whichever comes first."""


def checkpoint_due(cfg: TrialConfig, step: int, total: int, since_save_s: float = 0.0) -> bool:
    """Whether the loop saves after ``step`` of ``total``: always at the end; every
    ``train.checkpoint_every`` steps (0: never before the end); ``auto``: every 10 % of the
    steps or once ``since_save_s`` passes 5 minutes, so a crash costs at most about that."""
    if step == total:
        return True
    setting = cfg.train.checkpoint_every
    if setting == "auto":
        if since_save_s >= AUTO_INTERVAL_S:
            return True
        every = max(1, math.ceil(total / AUTO_FRACTION))
    else:
        every = setting
    return every > 0 and step % every == 0


def save(state: State, folder: Path) -> None:
    tensors: dict[str, torch.Tensor] = {f"model/{k}": v for k, v in state.model.named_parameters()}
    tensors.update({f"buffer/{k}": v for k, v in state.model.named_buffers()})
    pruner_tensors, pruner_meta = state.pruner.state_dict()
    tensors.update({f"pruner/{k}": v for k, v in pruner_tensors.items()})
    opt_tensors, opt_rest = checkpoint.optimizer_split(state.optimizer)
    tensors.update(opt_tensors)
    tensors["rng/torch"] = torch.get_rng_state()
    tensors["rng/data"] = state.generator.get_state()
    meta = {
        "step": state.step,
        "pruner": pruner_meta,
        "optimizer": opt_rest,
        "params_sum": state.accountant.params_sum,
        "acct_steps": state.accountant.steps,
        "train_flops": state.accountant.train_flops,
    }
    if state.sync is not None:
        sync_tensors, meta["sync"] = state.sync.state_dict()
        tensors.update({f"sync/{k}": v for k, v in sync_tensors.items()})
    checkpoint.save(folder, tensors, meta)


def restore(state: State, folder: Path) -> bool:
    """Load the checkpoint in ``folder`` into ``state``; False when there is none."""
    loaded = checkpoint.load(folder)
    if loaded is None:
        return False
    tensors, meta = loaded
    with torch.no_grad():
        for name, param in state.model.named_parameters():
            param.copy_(tensors[f"model/{name}"])
        for name, buf in state.model.named_buffers():
            buf.copy_(tensors[f"buffer/{name}"])
    prefix = "pruner/"
    pruner_tensors = {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}
    state.pruner.load_state_dict(pruner_tensors, meta["pruner"])
    state.optimizer.load_state_dict(checkpoint.optimizer_join(tensors, meta["optimizer"]))
    torch.set_rng_state(tensors["rng/torch"])
    state.generator.set_state(tensors["rng/data"])
    state.step = meta["step"]
    acct = state.accountant
    acct.params_sum, acct.steps = meta["params_sum"], meta["acct_steps"]
    # A checkpoint from before compute was counted: as if at today's masks throughout.
    since_start = BACKWARD_FACTOR * acct.flops_per_token() * acct.tokens()
    acct.train_flops = meta.get("train_flops", since_start)
    if state.sync is not None:
        sync = {k[len("sync/") :]: v for k, v in tensors.items() if k.startswith("sync/")}
        state.sync.load_state_dict(sync, meta["sync"])
    state.engine.reload()
    return True
