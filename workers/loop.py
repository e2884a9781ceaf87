"""The one training loop every trial runs, whatever its task or sparsity method.

Per step: the pruner may update masks, one forward/backward/optimizer step, masks
re-applied, N_t recorded. Every ``train.report_every`` steps (and at every mask update, so
the realised schedule is logged step by step) the loop evaluates and hands a metrics dict to
the reporter. Checkpoints hold weights, masks, optimizer state, RNG states and counters,
and a run resumed from one continues exactly as if it had never stopped.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import torch
from torch import nn

from spx.errors import TrialError
from spx.workers import checkpoint
from spx.workers.accounting import Accountant
from spx.workers.config import TrialConfig
from spx.workers.pruner import Pruner
from spx.workers.tasks import Task


class Reporter(Protocol):
    def report(self, step: int, metrics: dict[str, float]) -> None: ...


class ListReporter:
    """Keeps reports in memory (tests, notebooks)."""

    def __init__(self) -> None:
        self.rows: list[tuple[int, dict[str, float]]] = []

    def report(self, step: int, metrics: dict[str, float]) -> None:
        self.rows.append((step, dict(metrics)))


@dataclass
class State:
    """Everything a trial needs to continue after a restart."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    pruner: Pruner
    accountant: Accountant
    generator: torch.Generator
    step: int = 0


def build_optimizer(cfg: TrialConfig, model: nn.Module) -> torch.optim.Optimizer:
    t = cfg.train
    if t.optimizer == "sgd":
        return torch.optim.SGD(
            model.parameters(), lr=t.lr, momentum=t.momentum, weight_decay=t.weight_decay
        )
    return torch.optim.AdamW(model.parameters(), lr=t.lr, weight_decay=t.weight_decay)


def build_state(cfg: TrialConfig, task: Task) -> State:
    torch.manual_seed(cfg.train.seed)
    model = task.build_model(cfg)
    pruner = Pruner.build(cfg.prune, model, cfg.train.steps)
    accountant = Accountant.build(model, pruner.masks, task.example_input(cfg))
    generator = torch.Generator().manual_seed(cfg.train.seed + 1)
    return State(model, build_optimizer(cfg, model), pruner, accountant, generator)


def train(
    cfg: TrialConfig, task: Task, reporter: Reporter, checkpoint_dir: Path | None = None
) -> dict[str, float]:
    """Train one trial to ``train.steps``; return its final metrics."""
    state = build_state(cfg, task)
    if checkpoint_dir is not None:
        restore(state, checkpoint_dir)
    batches = task.batches(cfg, state.generator)
    window: list[float] = []
    started = time.perf_counter()
    while state.step < cfg.train.steps:
        changed = state.pruner.before_step(state.step, state.optimizer)
        loss = _train_step(state, task, next(batches))
        window.append(loss)
        state.step += 1
        state.accountant.record_step()
        if checkpoint_dir is not None and _checkpoint_due(cfg, state.step):
            save(state, checkpoint_dir)
        due = state.step % cfg.train.report_every == 0 or state.step == cfg.train.steps
        if due or changed:
            elapsed = time.perf_counter() - started
            metrics = _metrics(state, task, cfg, window, elapsed)
            reporter.report(state.step, metrics)
            window, started = [], time.perf_counter()
    state.model.eval()
    return _final(state, task, cfg)


def _train_step(state: State, task: Task, batch: tuple) -> float:
    state.model.train()
    state.optimizer.zero_grad(set_to_none=True)
    loss = task.loss(state.model, batch)
    value = float(loss.detach())
    if not math.isfinite(value):
        raise TrialError(f"train/loss is {value} at step {state.step + 1}")
    loss.backward()
    state.pruner.mask_grads()
    state.optimizer.step()
    state.pruner.after_step()
    return value


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


def _checkpoint_due(cfg: TrialConfig, step: int) -> bool:
    every = cfg.train.checkpoint_every
    return step == cfg.train.steps or (every > 0 and step % every == 0)


def save(state: State, folder: Path) -> None:
    tensors: dict[str, torch.Tensor] = {
        f"model/{k}": v for k, v in state.model.named_parameters()
    }
    tensors.update({f"buffer/{k}": v for k, v in state.model.named_buffers()})
    tensors.update({f"mask/{k}": v for k, v in state.pruner.masks.masks.items()})
    opt_tensors, opt_rest = checkpoint.optimizer_split(state.optimizer)
    tensors.update(opt_tensors)
    tensors["rng/torch"] = torch.get_rng_state()
    tensors["rng/data"] = state.generator.get_state()
    meta = {
        "step": state.step,
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
    for name in state.pruner.masks.masks:
        state.pruner.masks.masks[name] = tensors[f"mask/{name}"].bool()
    state.optimizer.load_state_dict(checkpoint.optimizer_join(tensors, meta["optimizer"]))
    torch.set_rng_state(tensors["rng/torch"])
    state.generator.set_state(tensors["rng/data"])
    state.step = meta["step"]
    state.accountant.params_sum = meta["params_sum"]
    state.accountant.steps = meta["acct_steps"]
    return True
