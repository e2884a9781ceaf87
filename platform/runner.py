"""The Ray side of one trial: a remote task that trains and streams its reports back.

A trial with ``resources.workers_per_trial`` R > 1 runs as a worker group (ALGORITHMS.md
§1): a coordinator task (no CPU of its own) reserves a placement group of R bundles,
starts one :class:`GroupWorker` actor per bundle, asks rank 0 for its address and a free
port, and the R ranks join a torch.distributed group there (gloo; NCCL with CUDA) with a
collective timeout. Rank 0 reports through the inbox like a single-worker trial; the
coordinator's result is rank 0's.

Reports travel through one :class:`Inbox` actor per sweep; the driver takes what arrived
once per turn and is the only writer to the store and MLflow. A report is one actor call
that also answers whether the trial should stop early, and it is synchronous, so when a
trial's task returns every report it made is already in the inbox.
"""

from __future__ import annotations

import importlib
import json
import os
from collections.abc import Callable
from dataclasses import dataclass, fields
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


class InboxReporter:
    """Writes each report to the trial's journal, then sends it to the driver.

    The journal (``<trial dir>/reports.jsonl``, on SPX_HOME) is the write-ahead log: when
    a driver dies with reports still in its inbox, a resumed driver replays the journal
    into the store, so nothing a trial reported is lost. A line is handed to the operating
    system before the report is sent, which survives any process dying (driver, worker,
    Ray); it is not fsync'ed against the machine itself going down, which would cost every
    report a disk flush (1-70 ms on this VM) on the trial's critical path.
    """

    def __init__(self, inbox: Any, number: int, attempt: int, trial_dir: Path):
        self.inbox, self.number, self.attempt = inbox, number, attempt
        self.journal = trial_dir / JOURNAL
        end_torn_line(self.journal)

    def _send(self, event: dict[str, Any]) -> bool:
        return send(self.inbox, {"number": self.number, "attempt": self.attempt, **event})

    def report(self, step: int, metrics: dict[str, float]) -> bool:
        write_report(self.journal, step, metrics)
        return not self._send({"kind": "report", "step": step, "metrics": metrics})

    def artifact(self, step: int, name: str, table: dict[str, list]) -> None:
        self._send({"kind": "table", "step": step, "name": name, "table": table})


@ray.remote(num_cpus=0)
class Inbox:
    """What a sweep's trials send the driver (started, report and table events) and the
    driver's one answer to them: which trials should stop early."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self.stopping: set[int] = set()

    def put(self, event: dict[str, Any]) -> bool:
        """Keep ``event``; whether its trial should stop."""
        self.events.append(event)
        return event["number"] in self.stopping

    def take(self) -> list[dict[str, Any]]:
        """Everything that arrived since the last take, in order."""
        events, self.events = self.events, []
        return events

    def stop(self, number: int) -> None:
        self.stopping.add(number)


def send(inbox: Any, event: dict[str, Any]) -> bool:
    """Put ``event`` in the inbox and wait until it is there; whether to stop."""
    return bool(ray.get(inbox.put.remote(event)))


def write_report(journal: Path, step: int, metrics: dict[str, float]) -> None:
    """Append one report to a journal (one JSON line)."""
    line = json.dumps({"step": step, "metrics": metrics}, allow_nan=True)
    with journal.open("a") as fh:
        fh.write(line + "\n")


def end_torn_line(journal: Path) -> None:
    """End a line that a dead attempt left half-written, so the next attempt's first report
    starts a line of its own instead of being glued to the torn one (and lost with it)."""
    try:
        with journal.open("rb") as fh:
            if fh.seek(0, os.SEEK_END) == 0:
                return
            fh.seek(-1, os.SEEK_END)
            torn = fh.read(1) != b"\n"
    except FileNotFoundError:
        return
    if torn:
        with journal.open("ab") as fh:
            fh.write(b"\n")


def read_journal(trial_dir: Path) -> list[tuple[int, dict[str, float]]]:
    """The (step, metrics) reports a trial wrote, one per step in step order; a torn line
    is skipped.

    An attempt that resumed from a checkpoint at step s reports the steps after s again
    (appended to the same journal): the latest value of each (step, metric) wins, as in
    the store.
    """
    path = Path(trial_dir) / JOURNAL
    if not path.is_file():
        return []
    by_step: dict[int, dict[str, float]] = {}
    for line in path.read_text().splitlines():
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            continue  # the process died mid-write: that report never reached anyone
        by_step.setdefault(int(entry["step"]), {}).update(entry["metrics"])
    return sorted(by_step.items())


def execute(
    job: TrialJob, inbox: Any, rank: int = 0, world: int = 1, rendezvous: Any = None
) -> dict[str, Any]:
    """Run one trial (or rank ``rank`` of a worker group of ``world``) in this process.

    Returns its final metrics; ``pruned`` is the step it stopped at when early
    termination stopped it, else None. Only rank 0 reports; a group's ranks join the
    process group at ``rendezvous = (host, port)``, rank 0's address.
    """
    light = light_trial(str(job.config.get("task", ""))) if world == 1 else None
    if light is not None:
        return _execute_light(job, inbox, light)
    import torch

    from spx.errors import TrialPruned
    from spx.search import nas
    from spx.workers.config import TrialConfig
    from spx.workers.loop import ListReporter
    from spx.workers.tasks import build_task

    torch.set_num_threads(max(1, job.threads))
    folder = Path(job.trial_dir)
    folder.mkdir(parents=True, exist_ok=True)
    suffix = f"-rank{rank}" if rank else ""
    (folder / f"worker{suffix}.pid").write_text(str(os.getpid()))  # for `kill` and fault tests
    node = ray.get_runtime_context().get_node_id() if ray.is_initialized() else None
    if rank == 0:
        send(inbox, {"kind": "started", "number": job.number, "attempt": job.attempt, "node": node})
    cfg = TrialConfig.model_validate(job.config)
    task = build_task(cfg.task, Path(job.data_dir))
    # Only rank 0 reports, so only it opens the journal.
    reporter = InboxReporter(inbox, job.number, job.attempt, folder) if rank == 0 else None
    comm = _join(rank, world, rendezvous, cfg.comm.timeout_s) if world > 1 else None
    try:
        ckpt = folder / f"checkpoint{suffix}"
        metrics, pruned = (
            nas.run_trial(cfg, task, reporter or ListReporter(), ckpt, comm),
            None,
        )
    except TrialPruned as stop:
        metrics, pruned = stop.metrics, stop.step
    finally:
        if comm is not None:
            from spx.workers.distributed import shutdown_torch

            shutdown_torch()
    return {"number": job.number, "metrics": metrics, "node": node, "pruned": pruned}


LightTrial = Callable[[dict[str, Any], Callable[[int, dict[str, float]], bool]], dict[str, float]]


def light_trial(task: str) -> LightTrial | None:
    """The torch-free trial function of a custom task, when its module offers one.

    A task ``module:Class`` whose module defines ``LIGHT_TRIALS = {"Class": fn}`` runs
    ``fn(config, report)`` in the worker instead of the training loop: ``config`` is the
    trial config as a dict, ``report(step, metrics)`` answers False when the trial should
    stop early (``fn`` then raises ``spx.errors.TrialPruned``), and ``fn`` returns the final
    metrics. The worker then imports neither torch nor the loop (benchmarks/sleep_task.py:
    orchestration benchmarks with dozens of workers on one machine). The driver validates
    configs against ``Class`` as for any task; the module itself must import without torch.
    """
    module_name, colon, attr = task.partition(":")
    if not colon:
        return None
    try:
        table = getattr(importlib.import_module(module_name), "LIGHT_TRIALS", None)
    except ImportError:
        return None  # the loop's path imports it again and reports the error
    return table.get(attr) if isinstance(table, dict) else None


def _execute_light(job: TrialJob, inbox: Any, light: LightTrial) -> dict[str, Any]:
    """A light trial (``light_trial``): the same events and journal as the loop's path."""
    from spx.errors import TrialPruned

    folder = Path(job.trial_dir)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "worker.pid").write_text(str(os.getpid()))
    node = ray.get_runtime_context().get_node_id() if ray.is_initialized() else None
    send(inbox, {"kind": "started", "number": job.number, "attempt": job.attempt, "node": node})
    reporter = InboxReporter(inbox, job.number, job.attempt, folder)
    try:
        metrics, pruned = light(job.config, reporter.report), None
    except TrialPruned as stop:
        metrics, pruned = stop.metrics, stop.step
    return {"number": job.number, "metrics": metrics, "node": node, "pruned": pruned}


def _join(rank: int, world: int, rendezvous: tuple[str, int], timeout_s: float) -> Any:
    import torch

    from spx.workers.distributed import init_torch

    host, port = rendezvous
    return init_torch(rank, world, host, port, timeout_s, cuda=torch.cuda.is_available())


@ray.remote(max_retries=0)
def _warm_up(task: str, data_dir: str) -> None:
    """What a fresh worker process would otherwise pay in its first trial (~4 s here)."""
    if light_trial(task) is not None:
        return  # its module is imported: that is all a light trial needs
    import torch._dynamo  # noqa: F401  (torch's optimizers import it on first use)

    from spx.search import nas  # noqa: F401
    from spx.workers.tasks import build_task

    try:
        build_task(task, Path(data_dir)).prepare()
    except Exception:  # noqa: BLE001  the first trial does the same and reports the error
        return


def warm_up(slots: int, cpus: float, gpus: float, task: str, data_dir: Path) -> None:
    """Start ``slots`` worker processes that import what trials import and load the task's
    data (``Task.prepare``), without waiting for them.

    The driver calls this as soon as Ray is up, so the work overlaps its own start-up
    (MLflow, the store); trials then reuse these processes (Ray keeps idle workers). A
    warm-up that fails changes nothing: the trial does the same work and reports the error.
    """
    for _ in range(slots):
        _warm_up.options(num_cpus=cpus, num_gpus=gpus).remote(task, str(data_dir))  # type: ignore[attr-defined]


@ray.remote(max_retries=0)
def run_trial(job_fields: dict[str, Any], inbox: Any) -> dict[str, Any]:
    return execute(TrialJob(**job_fields), inbox)


@ray.remote(max_restarts=0)
class GroupWorker:
    """One rank of a multi-worker trial, pinned to its placement-group bundle."""

    def address(self) -> tuple[str, int]:
        from spx.workers.distributed import free_port

        return ray.util.get_node_ip_address(), free_port()

    def run(self, job_fields: dict[str, Any], rank: int, world: int, *rest: Any) -> dict:
        inbox, rendezvous = rest
        return execute(TrialJob(**job_fields), inbox, rank, world, rendezvous)


@ray.remote(num_cpus=0, max_retries=0)
def run_group(
    job_fields: dict[str, Any], inbox: Any, world: int, cpus: float, gpus: float
) -> dict[str, Any]:
    """Launch ``world`` ranks in one placement group, rendezvous at rank 0, wait for all.

    The first rank to fail ends the whole group at once (no rank waits out its collective
    timeout): a dead process surfaces as a WorkerCrashedError, so the driver retries the
    trial from its checkpoints; an error the trial raised fails it with that error.
    """
    from ray.util.placement_group import placement_group, remove_placement_group
    from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

    bundle = {"CPU": cpus, **({"GPU": gpus} if gpus else {})}
    group = placement_group([bundle] * world, strategy="PACK")
    actors = []
    try:
        ray.get(group.ready(), timeout=600)
        for rank in range(world):
            where = PlacementGroupSchedulingStrategy(group, placement_group_bundle_index=rank)
            opts = {"num_cpus": cpus, "num_gpus": gpus, "scheduling_strategy": where}
            actors.append(GroupWorker.options(**opts).remote())  # type: ignore[attr-defined]
        rendezvous = ray.get(actors[0].address.remote())
        refs = [a.run.remote(job_fields, r, world, inbox, rendezvous) for r, a in enumerate(actors)]
        return _await_all(refs)[0]
    finally:
        for actor in actors:
            ray.kill(actor)
        remove_placement_group(group)


def _await_all(refs: list[ray.ObjectRef]) -> list[dict[str, Any]]:
    results: dict[ray.ObjectRef, dict[str, Any]] = {}
    pending = list(refs)
    while pending:
        done, pending = ray.wait(pending, num_returns=1)
        try:
            results[done[0]] = ray.get(done[0])
        except ray.exceptions.RayActorError as exc:
            raise ray.exceptions.WorkerCrashedError() from exc
        except ray.exceptions.RayTaskError as exc:
            cause = exc.cause
            raise (cause if isinstance(cause, BaseException) else exc) from None
    return [results[r] for r in refs]


def submit(job: TrialJob, inbox: Any, cpus: float, gpus: float, workers: int = 1) -> ray.ObjectRef:
    """One ObjectRef per trial: a single task, or the coordinator of a worker group."""
    # Shallow: Ray serializes the config anyway (asdict's deep copy cost ~1 ms a trial).
    job_fields = {f.name: getattr(job, f.name) for f in fields(job)}
    if workers > 1:
        return run_group.remote(job_fields, inbox, workers, cpus, gpus)  # type: ignore[call-arg]
    return run_trial.options(num_cpus=cpus, num_gpus=gpus).remote(job_fields, inbox)
