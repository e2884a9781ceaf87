"""Workloads: what a trial trains on. Each task builds its model, its batches and its eval.

Register a task with :func:`register`; the sweep's ``task:`` names one.

>>> sorted(TASKS)
['code-gpt', 'digits-cnn', 'digits-mlp', 'hf-causal-lm']
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from spx.errors import ConfigError
from spx.workers import corpus, digits
from spx.workers.cnn import CNN
from spx.workers.config import TrialConfig
from spx.workers.gpt import GPT
from spx.workers.mlp import MLP
from spx.workers.taskbase import TASKS, Batch, Part, Task, model_device, register, windows

__all__ = ["TASKS", "Batch", "Part", "Task", "build_task", "model_device", "register", "task_class"]


class DigitsMLP(Task):
    """An MLP on the 8x8 digits; reports val/loss (nats) and val/acc."""

    name = "digits-mlp"
    halves = True

    def build_model(self, cfg: TrialConfig) -> nn.Module:
        return MLP(64, 10, cfg.model.width, cfg.model.depth)

    def batches(
        self, cfg: TrialConfig, generator: torch.Generator, part: Part = "train"
    ) -> Iterator[Batch]:
        data = digits.part(part, self.data_dir)
        while True:
            idx = torch.randint(len(data.y), (cfg.train.batch_size,), generator=generator)
            yield data.x[idx], data.y[idx]

    def loss(self, model: nn.Module, batch: Batch) -> Tensor:
        return F.cross_entropy(model(batch[0]), batch[1])

    @torch.no_grad()
    def evaluate(self, model: nn.Module, cfg: TrialConfig, part: Part = "val") -> dict[str, float]:
        val = digits.part(part, self.data_dir)
        x, y = (t.to(model_device(model)) for t in (val.x, val.y))
        logits = model(x)
        return {
            "val/loss": float(F.cross_entropy(logits, y)),
            "val/acc": float((logits.argmax(1) == y).float().mean()),
        }

    def example_input(self, cfg: TrialConfig) -> Tensor:
        return digits.load(self.data_dir)[0].x[:1]

    def prepare(self) -> None:
        digits.load(self.data_dir)


class DigitsCNN(DigitsMLP):
    """A small ResNet-style CNN on the same 8x8 digits (conv weights, N:M on conv, channels)."""

    name = "digits-cnn"

    def build_model(self, cfg: TrialConfig) -> nn.Module:
        return CNN(10, cfg.model.width, cfg.model.depth)


class CodeGPT(Task):
    """A byte-level GPT on the standard library's sources; val/loss is nats per byte."""

    name = "code-gpt"
    eval_batches: ClassVar[int] = 8

    def validate(self, cfg: TrialConfig) -> None:
        if cfg.model.width % cfg.model.heads:
            raise ConfigError(
                f"model.width must be divisible by model.heads ({cfg.model.heads})",
                field="model.width",
                value=cfg.model.width,
            )
        super().validate(cfg)

    def build_model(self, cfg: TrialConfig) -> nn.Module:
        m = cfg.model
        return GPT(256, m.context, m.width, m.depth, m.heads)

    def batches(
        self, cfg: TrialConfig, generator: torch.Generator, part: Part = "train"
    ) -> Iterator[Batch]:
        _whole_splits_only(self.name, part)
        train, _ = corpus.load(self.data_dir)
        ctx = cfg.model.context
        while True:
            starts = torch.randint(
                len(train) - ctx - 1, (cfg.train.batch_size,), generator=generator
            )
            yield windows(train, starts, ctx)

    def loss(self, model: nn.Module, batch: Batch) -> Tensor:
        logits = model(batch[0])
        return F.cross_entropy(logits.flatten(0, 1), batch[1].flatten())

    @torch.no_grad()
    def evaluate(self, model: nn.Module, cfg: TrialConfig, part: Part = "val") -> dict[str, float]:
        _whole_splits_only(self.name, part)
        _, val = corpus.load(self.data_dir)
        ctx, n = cfg.model.context, self.eval_batches * cfg.train.batch_size
        # Fixed, evenly spaced windows: every trial is scored on the same bytes.
        starts = torch.linspace(0, len(val) - ctx - 2, n).long()
        loss = correct = 0.0
        device = model_device(model)
        for chunk in starts.split(cfg.train.batch_size):
            x, y = (t.to(device) for t in windows(val, chunk, ctx))
            logits = model(x)
            loss += float(F.cross_entropy(logits.flatten(0, 1), y.flatten(), reduction="sum"))
            correct += float((logits.argmax(-1) == y).sum())
        count = n * ctx
        return {"val/loss": loss / count, "val/acc": correct / count}

    def tokens_per_batch(self, cfg: TrialConfig) -> int:
        return cfg.train.batch_size * cfg.model.context

    def example_input(self, cfg: TrialConfig) -> Tensor:
        return torch.zeros(1, cfg.model.context, dtype=torch.long)

    def prepare(self) -> None:
        corpus.load(self.data_dir)


def _whole_splits_only(task: str, part: str) -> None:
    if part not in ("train", "val"):
        raise ConfigError(
            f"task {task} has no {part!r} half of its train split (architecture search "
            "runs on the digits tasks)",
            field="nas.method",
        )


def task_class(name: str) -> type[Task]:
    """A registered task, or ``package.module:ClassName`` naming your own Task subclass.

    The second form imports and runs your code, in the driver and in every worker: name
    only modules you trust.
    """
    if name in TASKS:
        return TASKS[name]
    if ":" not in name:
        raise ConfigError(
            f"unknown task; choose one of {sorted(TASKS)} or name your own as module:Class",
            field="task",
            value=name,
        )
    module_name, _, attr = name.partition(":")
    try:
        found = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"cannot import the task ({exc})", field="task", value=name) from None
    if not (isinstance(found, type) and issubclass(found, Task)):
        raise ConfigError("a custom task must be a Task subclass", field="task", value=name)
    return found


def build_task(name: str, data_dir: Path | None = None) -> Task:
    cls = task_class(name)
    return cls(data_dir) if data_dir else cls()


for _cls in (DigitsMLP, DigitsCNN, CodeGPT):
    register(_cls)

# Tasks in files of their own register themselves when imported.
from spx.workers import hf as _hf  # noqa: E402, F401
