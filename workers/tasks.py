"""Workloads: what a trial trains on. Each task builds its model, its batches and its eval.

Register a task with :func:`register`; the sweep's ``task:`` names one.

>>> sorted(TASKS)
['code-gpt', 'digits-cnn', 'digits-mlp', 'hf-causal-lm']
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn import functional as F

from spx.errors import ConfigError
from spx.workers import corpus, digits
from spx.workers.cnn import CNN
from spx.workers.config import TrialConfig
from spx.workers.gpt import GPT
from spx.workers.mlp import MLP
from spx.workers.taskbase import (
    TASKS,
    Batch,
    Part,
    Task,
    WindowLM,
    model_device,
    register,
)

__all__ = [
    "TASKS",
    "Batch",
    "Part",
    "Task",
    "WindowLM",
    "build_task",
    "model_device",
    "register",
    "task_class",
]


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


class CodeGPT(WindowLM):
    """A byte-level GPT on the standard library's sources; val/loss is nats per byte."""

    name = "code-gpt"

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

    def splits(self, cfg: TrialConfig) -> tuple[np.ndarray, np.ndarray]:
        return corpus.load(self.data_dir)

    def prepare(self) -> None:
        corpus.load(self.data_dir)


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
