"""The one training loop every trial runs, whatever its task or sparsity method.

Per step: the pruner may update masks (``before_step``), the LR is set for the step's
schedule position, one forward/backward pass, the pruner sees the dense gradient
(``after_backward``), the optimizer steps, masks are re-applied (``after_step``), N_t is
recorded. Every sparsity method plugs in through those hooks (see ``pruner.py``).

Every ``train.report_every`` steps (and at every mask update, so the realised schedule is
logged step by step) the loop evaluates and hands a metrics dict to the reporter. At every
mask update it also hands over the per-layer density table, when the reporter has an
``artifact`` method (:class:`TableReporter`). Checkpoints hold weights, optimizer state,
the pruner's state (masks, mask RNG, method state), RNG states and counters, and a run
resumed from one continues exactly as if it had never stopped.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import torch
from torch import nn

from spx.errors import TrialError, TrialPruned
from spx.workers import checkpoint
from spx.workers.accounting import Accountant
from spx.workers.config import TrialConfig
from spx.workers.methods import build_pruner
from spx.workers.pruner import Pruner
from spx.workers.schedules import lr_at
from spx.workers.tasks import Task

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
    step: int = 0


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


def build_state(cfg: TrialConfig, task: Task) -> State:
    torch.manual_seed(cfg.train.seed)
    model = task.build_model(cfg)
    pruner = build_pruner(cfg, model)
    accountant = Accountant.build(model, pruner.masks, task.example_input(cfg))
    generator = torch.Generator().manual_seed(cfg.train.seed + 1)
    return State(cfg, model, build_optimizer(cfg, model), pruner, accountant, generator)


def train(
    cfg: TrialConfig, task: Task, reporter: Reporter, checkpoint_dir: Path | None = None
) -> dict[str, float]:
    """Train one trial to the pruner's ``total_steps`` (``train.steps`` for every method
    but lottery, whose rounds train on); return its final metrics."""
    state = build_state(cfg, task)
    if checkpoint_dir is not None:
        restore(state, checkpoint_dir)
    total = state.pruner.total_steps
    batches = task.batches(cfg, state.generator)
    window: list[float] = []
    started = time.perf_counter()
    while state.step < total:
        loss, changed = advance(state, task, next(batches))
        window.append(loss)
        if checkpoint_dir is not None and _checkpoint_due(cfg, state.step, total):
            save(state, checkpoint_dir)
        due = state.step % cfg.train.report_every == 0 or state.step == total
        if due or changed:
            elapsed = time.perf_counter() - started
            metrics = _metrics(state, task, cfg, window, elapsed)
            keep_going = reporter.report(state.step, metrics)
            if changed:
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
    loss = _train_step(state, task, batch)
    state.step += 1
    state.accountant.record_step()
    return loss, changed


def _train_step(state: State, task: Task, batch: tuple) -> float:
    state.model.train()
    state.optimizer.zero_grad(set_to_none=True)
    loss = task.loss(state.model, batch)
    value = float(loss.detach())
    if not math.isfinite(value):
        raise TrialError(f"train/loss is {value} at step {state.step + 1}")
    loss.backward()
    state.pruner.after_backward(state.step, state.optimizer)
    state.optimizer.step()
    state.pruner.after_step()
    return value


def _publish(reporter: Reporter, step: int, name: str, table: dict[str, list]) -> None:
    artifact = getattr(reporter, "artifact", None)
    if artifact is not None:
        artifact(step, name, table)


def _metrics(
    state: State, task: Task, cfg: TrialConfig, window: list[float], elapsed: float
) -> dict[str, float]:
    state.model.eval()
    metrics = {
        "train/loss": sum(window) / len(window),
        "time/step_s": elapsed / len(window),
        "data/tokens": float(state.step * task.tokens_per_batch(cfg)),
    }
    metrics.update(task.evaluate(state.model, cfg))
    metrics.update(state.accountant.metrics())
    return metrics


def _final(state: State, task: Task, cfg: TrialConfig) -> dict[str, float]:
    final = task.evaluate(state.model, cfg)
    final.update(state.accountant.metrics())
    final["data/tokens"] = float(state.step * task.tokens_per_batch(cfg))
    return final


def _checkpoint_due(cfg: TrialConfig, step: int, total: int) -> bool:
    every = cfg.train.checkpoint_every
    return step == total or (every > 0 and step % every == 0)


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
    }
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
    state.accountant.params_sum = meta["params_sum"]
    state.accountant.steps = meta["acct_steps"]
    return True
