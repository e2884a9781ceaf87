"""Tasks for the orchestration benchmarks: ``sleep_task:Sleep`` and ``sleep_task:Nap``.

Name either with this folder on PYTHONPATH. ``SPX_BENCH_SLEEP_S`` (in the driver's
environment, which the Ray workers inherit) sets the sleep.

- ``Sleep`` (benchmarks/bench_orchestration.py): digits-mlp whose training step sleeps.
  With ``train.steps: 1`` a trial is one sleep plus the loop's fixed work (a tiny MLP, one
  evaluation on the 359 val images, one checkpoint), so the rest of a trial's wall time is
  the orchestration around it.
- ``Nap`` (benchmarks/bench_scale.py): a trial that sleeps and reports once, in a worker that
  never imports torch (``LIGHT_TRIALS``, see ``spx.platform.runner.light_trial``), so 64
  Ray workers fit in a few GB and a trial costs what Ray Tune's function trainable costs. The
  driver still sees a digits-mlp task (it validates the sweep's configs against it).

The module imports no torch itself: the Task classes are built on first access.
"""

from __future__ import annotations

import functools
import os
import time
from typing import Any

SLEEP_S = float(os.environ.get("SPX_BENCH_SLEEP_S", "0.5"))


def nap(config: dict[str, Any], report: Any) -> dict[str, float]:
    """One trial of ``Nap``: sleep, report the objective once at step 1, return it."""
    time.sleep(SLEEP_S)
    lr = float(config["train"]["lr"])
    metrics = {"val/loss": (lr - 0.01) ** 2, "val/acc": 1.0 - lr}
    report(1, metrics)
    return metrics


LIGHT_TRIALS = {"Nap": nap}


@functools.cache
def _classes() -> dict[str, type]:
    from torch import Tensor, nn

    from spx.workers.tasks import Batch, DigitsMLP

    class Sleep(DigitsMLP):
        def loss(self, model: nn.Module, batch: Batch) -> Tensor:
            time.sleep(SLEEP_S)
            return super().loss(model, batch)

    class Nap(DigitsMLP):
        """The driver's view of a light trial (never trained: see ``LIGHT_TRIALS``)."""

    for cls in (Sleep, Nap):
        cls.__module__ = __name__
    return {"Sleep": Sleep, "Nap": Nap}


def __getattr__(name: str) -> type:
    found = _classes().get(name) if name in ("Sleep", "Nap") else None
    if found is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return found
