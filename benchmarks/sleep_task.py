"""A task for benchmarks/bench_orchestration.py: digits-mlp whose training step sleeps.

With ``train.steps: 1`` a trial is one 0.5 s sleep plus the loop's fixed work (a tiny MLP,
one evaluation on the 359 val images, one checkpoint), so the rest of a trial's wall time is
the orchestration around it. Name it ``sleep_task:Sleep`` with this folder on PYTHONPATH;
``SPX_BENCH_SLEEP_S`` (in the driver's environment, which local Ray workers inherit) changes
the sleep.
"""

from __future__ import annotations

import os
import time

from torch import Tensor, nn

from spx.workers.tasks import Batch, DigitsMLP

SLEEP_S = float(os.environ.get("SPX_BENCH_SLEEP_S", "0.5"))


class Sleep(DigitsMLP):
    def loss(self, model: nn.Module, batch: Batch) -> Tensor:
        time.sleep(SLEEP_S)
        return super().loss(model, batch)
