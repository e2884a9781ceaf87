"""The Ray side of one trial: a remote task that trains and streams its reports back.

Reports travel through one Ray queue per sweep; the driver drains it and is the only
writer to the store and MLflow. ``put`` is synchronous, so when a trial's task returns
every report it made is already in the queue.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import ray


@dataclass(frozen=True)
class TrialJob:
    number: int
    attempt: int
    config: dict[str, Any]
    checkpoint_dir: str
    data_dir: str
    threads: int = 1


class QueueReporter:
    def __init__(self, queue: Any, number: int, attempt: int):
        self.queue, self.number, self.attempt = queue, number, attempt

    def report(self, step: int, metrics: dict[str, float]) -> None:
        self.queue.put(
            {
                "kind": "report",
                "number": self.number,
                "attempt": self.attempt,
                "step": step,
                "metrics": metrics,
            }
        )


def execute(job: TrialJob, queue: Any) -> dict[str, Any]:
    """Run one trial in this process (the body of the Ray task)."""
    import torch

    from spx.workers.config import TrialConfig
    from spx.workers.loop import train
    from spx.workers.tasks import build_task

    torch.set_num_threads(max(1, job.threads))
    node = ray.get_runtime_context().get_node_id() if ray.is_initialized() else None
    queue.put({"kind": "started", "number": job.number, "attempt": job.attempt, "node": node})
    cfg = TrialConfig.model_validate(job.config)
    task = build_task(cfg.task, Path(job.data_dir))
    reporter = QueueReporter(queue, job.number, job.attempt)
    metrics = train(cfg, task, reporter, Path(job.checkpoint_dir))
    return {"number": job.number, "metrics": metrics, "node": node}


@ray.remote(max_retries=0)
def run_trial(job_fields: dict[str, Any], queue: Any) -> dict[str, Any]:
    return execute(TrialJob(**job_fields), queue)


def submit(job: TrialJob, queue: Any, cpus: float, gpus: float) -> ray.ObjectRef:
    return run_trial.options(num_cpus=cpus, num_gpus=gpus).remote(asdict(job), queue)
