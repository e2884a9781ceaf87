"""The Ray side of one trial: a remote task that trains and streams its reports back.

Reports travel through one Ray queue per sweep; the driver drains it and is the only
writer to the store and MLflow. ``put`` is synchronous, so when a trial's task returns
every report it made is already in the queue.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import ray


@dataclass(frozen=True)
class TrialJob:
    number: int
    attempt: int
    config: dict[str, Any]
    trial_dir: str
    data_dir: str
    threads: int = 1


JOURNAL = "reports.jsonl"


class QueueReporter:
    """Writes each report to the trial's journal, then sends it to the driver.

    The journal (``<trial dir>/reports.jsonl``, on SPX_HOME) is the write-ahead log: when
    a driver dies with reports still in its queue, a resumed driver replays the journal
    into the store, so nothing a trial reported is lost.
    """

    def __init__(self, queue: Any, number: int, attempt: int, trial_dir: Path, control: Any):
        self.queue, self.number, self.attempt = queue, number, attempt
        self.journal = trial_dir / JOURNAL
        self.control = control

    def _send(self, event: dict[str, Any]) -> None:
        self.queue.put({"number": self.number, "attempt": self.attempt, **event})

    def report(self, step: int, metrics: dict[str, float]) -> bool:
        line = json.dumps({"step": step, "metrics": metrics}, allow_nan=True)
        with self.journal.open("a") as fh:
            fh.write(line + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        self._send({"kind": "report", "step": step, "metrics": metrics})
        return not ray.get(self.control.should_stop.remote(self.number))

    def artifact(self, step: int, name: str, table: dict[str, list]) -> None:
        self._send({"kind": "table", "step": step, "name": name, "table": table})


@ray.remote(num_cpus=0)
class Control:
    """The driver's decisions that running trials poll: which trials should stop early."""

    def __init__(self) -> None:
        self.stopping: set[int] = set()

    def stop(self, number: int) -> None:
        self.stopping.add(number)

    def should_stop(self, number: int) -> bool:
        return number in self.stopping


def read_journal(trial_dir: Path) -> list[tuple[int, dict[str, float]]]:
    """The (step, metrics) reports a trial wrote, in order; a torn last line is skipped."""
    path = Path(trial_dir) / JOURNAL
    if not path.is_file():
        return []
    out = []
    for line in path.read_text().splitlines():
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            continue  # the process died mid-write: that report never reached anyone
        out.append((int(entry["step"]), entry["metrics"]))
    return out


def execute(job: TrialJob, queue: Any, control: Any) -> dict[str, Any]:
    """Run one trial in this process (the body of the Ray task).

    Returns its final metrics; ``pruned`` is the step it stopped at when early
    termination stopped it, else None.
    """
    import torch

    from spx.errors import TrialPruned
    from spx.workers.config import TrialConfig
    from spx.workers.loop import train
    from spx.workers.tasks import build_task

    torch.set_num_threads(max(1, job.threads))
    folder = Path(job.trial_dir)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "worker.pid").write_text(str(os.getpid()))  # for `kill`, logs and fault tests
    node = ray.get_runtime_context().get_node_id() if ray.is_initialized() else None
    queue.put({"kind": "started", "number": job.number, "attempt": job.attempt, "node": node})
    cfg = TrialConfig.model_validate(job.config)
    task = build_task(cfg.task, Path(job.data_dir))
    reporter = QueueReporter(queue, job.number, job.attempt, folder, control)
    try:
        metrics, pruned = train(cfg, task, reporter, folder / "checkpoint"), None
    except TrialPruned as stop:
        metrics, pruned = stop.metrics, stop.step
    return {"number": job.number, "metrics": metrics, "node": node, "pruned": pruned}


@ray.remote(max_retries=0)
def run_trial(job_fields: dict[str, Any], queue: Any, control: Any) -> dict[str, Any]:
    return execute(TrialJob(**job_fields), queue, control)


def submit(job: TrialJob, queue: Any, control: Any, cpus: float, gpus: float) -> ray.ObjectRef:
    return run_trial.options(num_cpus=cpus, num_gpus=gpus).remote(asdict(job), queue, control)
