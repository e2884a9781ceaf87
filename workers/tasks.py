"""Workloads: what a trial trains on. Each task builds its model, its batches and its eval.

Register a task with :func:`register`; the sweep's ``task:`` names one.

>>> sorted(TASKS)
['code-gpt', 'digits-cnn', 'digits-mlp']
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, Literal

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn import functional as F

from spx.errors import ConfigError
from spx.workers import corpus, digits
from spx.workers.cnn import CNN
from spx.workers.config import TrialConfig
from spx.workers.gpt import GPT
from spx.workers.methods import method_class
from spx.workers.mlp import MLP

Batch = tuple[Tensor, Tensor]
Part = Literal["train", "search", "holdout", "val"]


@dataclass
class Task:
    """Base class of a workload. ``data_dir`` is where built datasets are cached."""

    name: ClassVar[str]
    eval_metrics: ClassVar[tuple[str, ...]] = ("val/loss", "val/acc")
    """What ``evaluate`` returns; a sweep's objective must be among what a trial reports."""
    halves: ClassVar[bool] = False
    """Whether ``batches``/``evaluate`` take the ``search`` and ``holdout`` halves."""
    data_dir: Path = field(default_factory=lambda: Path(".spx/data"))

    def validate(self, cfg: TrialConfig) -> None:
        """Raise ConfigError for configs this task cannot run.

        The base asks the sparsity method about the model's shapes (built on the meta
        device: no memory, no init cost); a subclass adds its own checks and calls it.
        """
        with torch.device("meta"):
            model = self.build_model(cfg)
        method_class(cfg.prune.method).validate(cfg, model)

    def build_model(self, cfg: TrialConfig) -> nn.Module:
        raise NotImplementedError

    def batches(
        self, cfg: TrialConfig, generator: torch.Generator, part: Part = "train"
    ) -> Iterator[Batch]:
        """Training batches from the train split (``part="train"``) or one of its two
        fixed halves, ``"search"`` and ``"holdout"`` (architecture search fits weights on
        one half and scores or updates the architecture on the other, never on val)."""
        raise NotImplementedError

    def loss(self, model: nn.Module, batch: Batch) -> Tensor:
        raise NotImplementedError

    def evaluate(self, model: nn.Module, cfg: TrialConfig, part: Part = "val") -> dict[str, float]:
        """val/loss and val/acc on the val split, or the same scores on a train half."""
        raise NotImplementedError

    def tokens_per_batch(self, cfg: TrialConfig) -> int:
        return cfg.train.batch_size

    def example_input(self, cfg: TrialConfig) -> Tensor:
        """One example (batch of one), used to count FLOPs per example."""
        raise NotImplementedError

    def prepare(self) -> None:
        """Load (or build and cache) the data trials read. Ray workers call it as a sweep
        starts, so a fresh worker process does not pay for it inside its first trial."""


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

    def _windows(self, data: np.ndarray, starts: Tensor, context: int) -> Batch:
        rows = np.stack([data[s : s + context + 1] for s in starts.tolist()]).astype(np.int64)
        seq = torch.from_numpy(rows)
        return seq[:, :-1], seq[:, 1:]

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
            yield self._windows(train, starts, ctx)

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
            x, y = (t.to(device) for t in self._windows(val, chunk, ctx))
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


def model_device(model: nn.Module) -> torch.device:
    """Where ``model``'s weights are (the loop trains on the GPU when it has one): a task's
    batches and evaluation data are built on the CPU and sent there."""
    return next(model.parameters()).device


def _whole_splits_only(task: str, part: str) -> None:
    if part not in ("train", "val"):
        raise ConfigError(
            f"task {task} has no {part!r} half of its train split (architecture search "
            "runs on the digits tasks)",
            field="nas.method",
        )


TASKS: dict[str, type[Task]] = {}


def register(cls: type[Task]) -> type[Task]:
    TASKS[cls.name] = cls
    return cls


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
