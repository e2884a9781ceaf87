"""Architecture search: what one NAS trial runs, the pipeline its ``nas.method`` names.

Every NAS pipeline lives inside one trial and trains through the one training loop
(``spx.workers.loop.train``), so checkpoints, reports, early termination and the store
work as for any trial. ``nas.method`` picks the pipeline from :data:`PIPELINES`:

- ``none``: the task's model through the loop (with any ``prune.method``, ``oto`` included).
- ``random-nas``: the random-search baseline (Farahani 2024), see :mod:`random_nas`.
- ``dass`` / ``darts``: a DARTS supernet searched with sparse ops and masks on (DASS) or
  off (plain DARTS), then the derived net retrained at ``prune.sparsity``, see :mod:`dass`.

The sweep-level ``method: random-nas | dass | oto`` that runs pipelines side by side is a
search strategy (presets.py).

>>> sorted(PIPELINES), PIPELINES["dass"].metrics[:2]
(['darts', 'dass', 'random-nas'], ('nas/search_steps', 'nas/search_s'))
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from spx.errors import ConfigError
from spx.workers.config import TrialConfig
from spx.workers.tasks import Task


@dataclass(frozen=True)
class Pipeline:
    """A NAS pipeline: ``load()`` returns the module whose ``validate(cfg, task)`` checks a
    trial and whose ``run(cfg, task, reporter, checkpoint_dir)`` runs it (imported only
    when a trial needs it: it imports the training loop); ``metrics``: what a trial of it
    reports beside the loop's metrics."""

    load: Callable[[], ModuleType]
    metrics: tuple[str, ...]


def _random_nas() -> ModuleType:
    from spx.search import random_nas

    return random_nas


def _dass() -> ModuleType:
    from spx.search import dass

    return dass


_SEARCHED = ("nas/search_steps", "nas/search_s")
PIPELINES: dict[str, Pipeline] = {
    "random-nas": Pipeline(_random_nas, (*_SEARCHED, "nas/best_score", "nas/candidates")),
    "dass": Pipeline(_dass, (*_SEARCHED, "search/loss", "search/acc")),
    "darts": Pipeline(_dass, (*_SEARCHED, "search/loss", "search/acc")),
}
"""``nas.method`` -> its pipeline (``none``, the plain loop, has none)."""


def validate(cfg: TrialConfig, task: Task) -> None:
    """What a NAS pipeline needs of the trial config (ConfigError naming the key)."""
    pipeline = PIPELINES.get(cfg.nas.method)
    if pipeline is not None:
        pipeline.load().validate(cfg, task)


def reported_metrics(cfg: TrialConfig, task: Task, workers: int = 1) -> set[str]:
    """The metric names a trial of ``cfg`` reports, its NAS pipeline's included."""
    from spx.workers.loop import reported_metrics as loop_metrics

    pipeline = PIPELINES.get(cfg.nas.method)
    return loop_metrics(cfg, task, workers) | set(pipeline.metrics if pipeline else ())


def run_trial(
    cfg: TrialConfig,
    task: Task,
    reporter: Any,
    checkpoint_dir: Path | None = None,
    comm: Any = None,
) -> dict[str, float]:
    """Run one trial: the plain loop, or the NAS pipeline ``nas.method`` names."""
    from spx.workers.loop import train

    pipeline = PIPELINES.get(cfg.nas.method)
    if pipeline is None:
        return train(cfg, task, reporter, checkpoint_dir, comm)
    if comm is not None:
        raise ConfigError(
            "architecture search runs on one worker", field="nas.method", value=cfg.nas.method
        )
    return pipeline.load().run(cfg, task, reporter, checkpoint_dir)
