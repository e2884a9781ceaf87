"""Architecture search: the sweep-level NAS methods and what one NAS trial runs.

Every NAS pipeline lives inside one trial and trains through the one training loop
(``spx.workers.loop.train``), so checkpoints, reports, early termination and the store
work as for any trial. ``nas.method`` picks the pipeline:

- ``none``: the task's model through the loop (with any ``prune.method``, ``oto`` included).
- ``random-nas``: the random-search baseline (ALGORITHMS.md §3), see :mod:`random_nas`.
- ``dass`` / ``darts``: a DARTS supernet searched with sparse ops and masks on (DASS) or
  off (plain DARTS), then the derived net retrained at ``prune.sparsity``, see :mod:`dass`.

A sweep's ``method: random-nas | dass | oto`` is a grid over the sweep's parameters times
that method's *arms*, the pipelines a fair comparison needs side by side (a ``variant``
axis; each arm sets full dotted keys):

>>> [arm for arm in ARMS["random-nas"]]  # doctest: +NORMALIZE_WHITESPACE
[{'nas.method': 'random-nas', 'prune.method': 'nodes'}, {'prune.method': 'nodes'},
 {'prune.method': 'none'}]

i.e. the RS-selected node mask, a random node mask at the same sparsity (the "random
counterpart") and the dense parent. ``dass`` runs DASS and DARTS-then-prune; ``oto`` runs
DHSPG with its compact subnetwork and the dense model. Seeds come from the sweep's own
parameters (``train.seed: {values: [0, 1, 2]}``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from spx.errors import ConfigError
from spx.search.base import Strategy
from spx.search.constraints import Constraints
from spx.search.grid import GridSearch
from spx.search.space import Categorical, Conditions
from spx.workers.config import TrialConfig
from spx.workers.tasks import Task

VARIANT = "variant"

ARMS: dict[str, tuple[dict[str, Any], ...]] = {
    "random-nas": (
        {"nas.method": "random-nas", "prune.method": "nodes"},
        {"prune.method": "nodes"},
        {"prune.method": "none"},
    ),
    "dass": ({"nas.method": "dass"}, {"nas.method": "darts"}),
    "oto": ({"prune.method": "oto"}, {"prune.method": "none"}),
}


def preset(
    method: str,
    space: dict[str, Any],
    conditions: Conditions = (),
    constraints: Constraints = Constraints(),
) -> Strategy:
    """The grid a NAS ``method`` runs: the sweep's axes times the method's arms."""
    if VARIANT in space:
        raise ConfigError(
            f"method {method} adds its own {VARIANT!r} axis; rename yours or use method: grid",
            field=f"parameters.{VARIANT}",
        )
    return GridSearch({**space, VARIANT: Categorical(ARMS[method])}, conditions, constraints)


def validate(cfg: TrialConfig, task: Task) -> None:
    """What a NAS pipeline needs of the trial config (ConfigError naming the key)."""
    method = cfg.nas.method
    if method == "none":
        return
    if method == "random-nas":
        from spx.search import random_nas

        random_nas.validate(cfg, task)
    else:
        from spx.search import dass

        dass.validate(cfg)


NAS_METRICS = {
    "random-nas": ("nas/search_steps", "nas/search_s", "nas/best_score", "nas/candidates"),
    "dass": ("nas/search_steps", "nas/search_s", "search/loss", "search/acc"),
    "darts": ("nas/search_steps", "nas/search_s", "search/loss", "search/acc"),
}


def reported_metrics(cfg: TrialConfig, task: Task, workers: int = 1) -> set[str]:
    """The metric names a trial of ``cfg`` reports, its NAS pipeline's included."""
    from spx.workers.loop import reported_metrics as loop_metrics

    return loop_metrics(cfg, task, workers) | set(NAS_METRICS.get(cfg.nas.method, ()))


def run_trial(
    cfg: TrialConfig,
    task: Task,
    reporter: Any,
    checkpoint_dir: Path | None = None,
    comm: Any = None,
) -> dict[str, float]:
    """Run one trial: the plain loop, or the NAS pipeline ``nas.method`` names."""
    from spx.workers.loop import train

    if cfg.nas.method == "none":
        return train(cfg, task, reporter, checkpoint_dir, comm)
    if comm is not None:
        raise ConfigError(
            "architecture search runs on one worker", field="nas.method", value=cfg.nas.method
        )
    if cfg.nas.method == "random-nas":
        from spx.search import random_nas

        return random_nas.run(cfg, task, reporter, checkpoint_dir)
    from spx.search import dass

    return dass.run(cfg, task, reporter, checkpoint_dir)
