"""Random search over node masks, the sparse-NAS baseline (Farahani, arXiv 2403.08265).

One ``nas.method: random-nas`` trial:

1. keeps the parent at its initialisation θ_0 (``train.seed``, shared by every candidate
   and by the sweep's random-counterpart and dense arms);
2. draws ``nas.candidates`` (K) node keep-masks with ``prune.method: nodes`` at
   ``prune.sparsity`` (exact per-family counts), each from its own mask seed;
3. scores each by its loss on the *holdout* half of the train split after ``nas.budget`` x
   ``train.steps`` steps on the *search* half (never the val split the sweep reports);
4. trains the best one through the normal loop on the whole train split for
   ``train.steps``, reporting as any trial does.

Choices where the paper is silent (flags where they matter): K = 20 and a 5 % budget by
default (``nas.candidates``, ``nas.budget``); the score is holdout *loss* (less noisy than
accuracy after a short budget); the search compute (K x budget steps) is reported as
``nas/search_steps`` beside ``nas/search_s`` so it is never hidden. The candidates'
scores are logged as the ``nas_candidates`` table. The choice is written to
``nas.json`` in the trial's folder before the final training, so a resumed trial skips
the search and continues from its checkpoint.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from spx.errors import ConfigError
from spx.workers.config import TrialConfig
from spx.workers.loop import ListReporter, train
from spx.workers.tasks import Batch, Part, Task

CHOICE = "nas.json"
SEED_STRIDE = 10_000  # candidate mask seeds: (train.seed + 1) * stride + k, never a default


class Half(Task):
    """A task's view for architecture search: fit on one half of the train split, score
    (``evaluate``) on the other; everything else is the task's own."""

    def __init__(self, task: Task, fit: Part = "search", score: Part = "holdout"):
        self.inner, self.fit, self.score = task, fit, score
        self.data_dir = task.data_dir

    def build_model(self, cfg: TrialConfig) -> nn.Module:
        return self.inner.build_model(cfg)

    def batches(
        self, cfg: TrialConfig, generator: torch.Generator, part: Part = "train"
    ) -> Iterator[Batch]:
        return self.inner.batches(cfg, generator, self.fit)

    def loss(self, model: nn.Module, batch: Batch) -> Tensor:
        return self.inner.loss(model, batch)

    def evaluate(self, model: nn.Module, cfg: TrialConfig, part: Part = "val") -> dict[str, float]:
        return self.inner.evaluate(model, cfg, self.score)

    def tokens_per_batch(self, cfg: TrialConfig) -> int:
        return self.inner.tokens_per_batch(cfg)

    def example_input(self, cfg: TrialConfig) -> Tensor:
        return self.inner.example_input(cfg)


def validate(cfg: TrialConfig, task: Task) -> None:
    if cfg.prune.method != "nodes":
        raise ConfigError(
            "random-nas searches node masks: set prune.method to nodes",
            field="prune.method",
            value=cfg.prune.method,
        )
    if cfg.prune.sparsity <= 0:
        raise ConfigError(
            "random-nas needs a node sparsity above 0",
            field="prune.sparsity",
            value=cfg.prune.sparsity,
        )
    budget = cfg.nas.budget * cfg.train.steps
    if budget < 1:
        raise ConfigError(
            f"nas.budget x train.steps must be at least one step (is {budget:g})",
            field="nas.budget",
            value=cfg.nas.budget,
        )
    if not task.halves:
        raise ConfigError(
            "random-nas scores masks on a held-out half of the train split, which this task "
            "does not have (the digits tasks do)",
            field="task",
            value=cfg.task,
        )


def candidate_seed(cfg: TrialConfig, k: int) -> int:
    return (cfg.train.seed + 1) * SEED_STRIDE + k


def run(
    cfg: TrialConfig, task: Task, reporter: Any, checkpoint_dir: Path | None
) -> dict[str, float]:
    trial_dir = checkpoint_dir.parent if checkpoint_dir is not None else None
    choice = _load(trial_dir)
    if choice is None:
        choice = search(cfg, task)
        artifact = getattr(reporter, "artifact", None)
        if artifact is not None:
            artifact(0, "nas_candidates", choice["table"])
        _save(trial_dir, choice)
    final = train(
        _with(cfg, {"prune.mask_seed": choice["mask_seed"]}), task, reporter, checkpoint_dir
    )
    final.update(
        {
            "nas/search_steps": float(choice["search_steps"]),
            "nas/search_s": float(choice["search_s"]),
            "nas/best_score": float(choice["best_score"]),
            "nas/candidates": float(len(choice["table"]["candidate"])),
        }
    )
    return final


def search(cfg: TrialConfig, task: Task) -> dict[str, Any]:
    """Score K random node masks; return the best one's mask seed and the score table."""
    budget = max(1, round(cfg.nas.budget * cfg.train.steps))
    half = Half(task)
    started = time.perf_counter()
    table: dict[str, list] = {
        "candidate": [],
        "mask_seed": [],
        "holdout_loss": [],
        "holdout_acc": [],
    }
    for k in range(cfg.nas.candidates):
        seed = candidate_seed(cfg, k)
        short = _with(
            cfg,
            {
                "prune.mask_seed": seed,
                "train.steps": budget,
                "train.report_every": budget,
                "train.checkpoint_every": 0,
            },
        )
        scored = train(short, half, ListReporter())
        table["candidate"].append(k)
        table["mask_seed"].append(seed)
        table["holdout_loss"].append(scored["val/loss"])
        table["holdout_acc"].append(scored["val/acc"])
    losses = table["holdout_loss"]
    best = min(range(len(losses)), key=lambda i: (losses[i], i))
    return {
        "mask_seed": table["mask_seed"][best],
        "best_score": losses[best],
        "search_steps": budget * cfg.nas.candidates,
        "search_s": time.perf_counter() - started,
        "table": table,
    }


def _with(cfg: TrialConfig, overrides: dict[str, Any]) -> TrialConfig:
    return TrialConfig.from_flat(cfg.task, {**cfg.flat(), **overrides})


def _load(trial_dir: Path | None) -> dict[str, Any] | None:
    if trial_dir is None or not (trial_dir / CHOICE).is_file():
        return None
    return json.loads((trial_dir / CHOICE).read_text())


def _save(trial_dir: Path | None, choice: dict[str, Any]) -> None:
    if trial_dir is None:
        return
    trial_dir.mkdir(parents=True, exist_ok=True)
    tmp = trial_dir / f".{CHOICE}.{os.getpid()}"
    tmp.write_text(json.dumps(choice, allow_nan=True))
    tmp.replace(trial_dir / CHOICE)
