"""The base of a task (what a trial trains on), its registry and the helpers every task
uses. A task in a file of its own imports from here and registers itself with
:func:`register`; tasks.py imports the shipped ones, so the registry is complete there.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, Literal

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn import functional as F

from spx.errors import ConfigError
from spx.workers.config import TrialConfig
from spx.workers.methods import method_class

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


class WindowLM(Task):
    """A next-token language model on windows of a token stream (``splits``: train and
    val ids). Training windows are drawn at random; evaluation scores fixed, evenly spaced
    val windows, so every trial is scored on the same tokens, and reports which
    (``eval/tokens``, ``eval/digest``: a hash of them) beside ``val/loss`` (nats per token)
    and ``val/acc`` (next-token accuracy)."""

    eval_batches: ClassVar[int] = 8
    eval_metrics: ClassVar[tuple[str, ...]] = ("val/loss", "val/acc", "eval/tokens", "eval/digest")

    def splits(self, cfg: TrialConfig) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError

    def logits(self, model: nn.Module, x: Tensor) -> Tensor:
        return model(x)

    def batches(
        self, cfg: TrialConfig, generator: torch.Generator, part: Part = "train"
    ) -> Iterator[Batch]:
        whole_splits_only(self.name, part)
        train, _ = self.splits(cfg)
        ctx = cfg.model.context
        while True:
            starts = torch.randint(
                len(train) - ctx - 1, (cfg.train.batch_size,), generator=generator
            )
            yield windows(train, starts, ctx)

    def loss(self, model: nn.Module, batch: Batch) -> Tensor:
        logits = self.logits(model, batch[0])
        return F.cross_entropy(logits.flatten(0, 1), batch[1].flatten())

    @torch.no_grad()
    def evaluate(self, model: nn.Module, cfg: TrialConfig, part: Part = "val") -> dict[str, float]:
        whole_splits_only(self.name, part)
        _, val = self.splits(cfg)
        ctx, n = cfg.model.context, self.eval_batches * cfg.train.batch_size
        starts = torch.linspace(0, len(val) - ctx - 2, n).long()
        device = model_device(model)
        digest = hashlib.sha256()
        loss = correct = 0.0
        for chunk in starts.split(cfg.train.batch_size):
            x, y = windows(val, chunk, ctx)
            digest.update(y.numpy().tobytes())
            x, y = x.to(device), y.to(device)
            logits = self.logits(model, x)
            loss += float(F.cross_entropy(logits.flatten(0, 1), y.flatten(), reduction="sum"))
            correct += float((logits.argmax(-1) == y).sum())
        count = n * ctx
        return {
            "val/loss": loss / count,
            "val/acc": correct / count,
            "eval/tokens": float(count),
            "eval/digest": float(int(digest.hexdigest()[:12], 16)),
        }

    def tokens_per_batch(self, cfg: TrialConfig) -> int:
        return cfg.train.batch_size * cfg.model.context

    def example_input(self, cfg: TrialConfig) -> Tensor:
        return torch.zeros(1, cfg.model.context, dtype=torch.long)


def whole_splits_only(task: str, part: str) -> None:
    if part not in ("train", "val"):
        raise ConfigError(
            f"task {task} has no {part!r} half of its train split (architecture search "
            "runs on the digits tasks)",
            field="nas.method",
        )


def windows(data: np.ndarray, starts: Tensor, context: int) -> Batch:
    """Next-token pairs from the token windows ``data[s : s + context + 1]``."""
    rows = np.stack([data[s : s + context + 1] for s in starts.tolist()]).astype(np.int64)
    seq = torch.from_numpy(rows)
    return seq[:, :-1], seq[:, 1:]


def model_device(model: nn.Module) -> torch.device:
    """Where ``model``'s weights are (the loop trains on the GPU when it has one): a task's
    batches and evaluation data are built on the CPU and sent there."""
    return next(model.parameters()).device


TASKS: dict[str, type[Task]] = {}


def register(cls: type[Task]) -> type[Task]:
    TASKS[cls.name] = cls
    return cls
