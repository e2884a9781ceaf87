"""Copy a sweep from the store into MLflow, idempotently (``spx sweep sync``).

The store is the record; MLflow is a view of it that can fall behind (its server was down,
or a driver died between the two writes). ``sync_sweep`` makes MLflow match the store: the
experiment named after the sweep, its parent run, one child run per trial (found by the
id the store recorded, else by its ``spx.trial`` tag, else created), the params and tags
a run lacks, every (step, name) metric point the store has and the run lacks, and each
run's status and end time (from the trial's ``finished_at``). Nothing already present is
written again, so a second sync changes nothing. Artifacts (``trial_config.json``, density
tables) are not rebuilt; the parent's ``sweep.yaml`` is.

Run it when no driver holds the sweep (it refuses otherwise, see ``lifecycle.claim``):
the driver is the store's and MLflow's single writer while it runs.
"""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from spx.errors import TrackingError
from spx.platform import lifecycle
from spx.platform.settings import Settings, mask_url
from spx.platform.store import Store, SweepRow, SweepStatus, TrialRow, TrialStatus
from spx.platform.tracking import experiment_id, param_text, sweep_params

_BATCH = 1000  # MLflow's log_batch limit for metrics
_SWEEP_STATUS = {SweepStatus.COMPLETED: "FINISHED", SweepStatus.FAILED: "FAILED"}


@dataclass
class SyncReport:
    experiment_id: str
    runs_created: int = 0
    params: int = 0
    tags: int = 0
    metrics: int = 0
    statuses: int = 0

    @property
    def changed(self) -> bool:
        return any((self.runs_created, self.params, self.tags, self.metrics, self.statuses))


def sync_sweep(settings: Settings, name: str, force: bool = False) -> SyncReport:
    """Make MLflow at ``settings.tracking_uri`` match the store for the sweep ``name``.

    Example: ``sync_sweep(resolve(), "quickstart").metrics`` (points written this time)
    """
    with Store.open(settings.store_url) as store:
        sweep = store.get_sweep(name)
        trials = store.trials(sweep.id)
        lifecycle.claim(settings, sweep, trials, force)
        from mlflow.exceptions import MlflowException  # slow imports: after the cheap checks
        from mlflow.tracking import MlflowClient

        try:
            syncer = _Syncer(MlflowClient(tracking_uri=settings.tracking_uri), store, sweep)
            return syncer.run(settings, trials)
        except MlflowException as exc:
            raise TrackingError(
                f"MLflow at {mask_url(settings.tracking_uri)} failed while syncing {name!r}: "
                f"{mask_url(str(exc)).splitlines()[0][:500]}"
            ) from None


def run_status(trial: TrialRow) -> str:
    """The MLflow status a trial's run ends with."""
    if trial.status == TrialStatus.COMPLETED:
        return "FINISHED"
    if trial.status == TrialStatus.FAILED:
        return "FAILED"
    if trial.status == TrialStatus.PRUNED and trial.error != lifecycle.CANCELLED:
        return "FINISHED"
    return "KILLED"  # cancelled, LOST, or never started (no driver holds it any more)


class _Syncer:
    def __init__(self, client: Any, store: Store, sweep: SweepRow):
        self.client, self.store, self.sweep = client, store, sweep
        self.report: SyncReport

    def run(self, settings: Settings, trials: list[TrialRow]) -> SyncReport:
        exp = experiment_id(self.client, self.sweep.name, settings.artifacts)
        self.report = SyncReport(exp)
        from spx.platform.spec import parse_spec

        runs = self._runs(exp)
        spec = parse_spec(self.sweep.spec_text, name=self.sweep.name)
        parent = self._parent(exp, runs, sweep_params(spec))
        if exp != self.sweep.mlflow_experiment_id or parent.info.run_id != self.sweep.mlflow_run_id:
            self.store.update_sweep(
                self.sweep.id, mlflow_experiment_id=exp, mlflow_run_id=parent.info.run_id
            )
        if not any(a.path == "sweep.yaml" for a in self.client.list_artifacts(parent.info.run_id)):
            self.client.log_text(parent.info.run_id, self.sweep.spec_text, "sweep.yaml")
        history = self._history(trials)
        for trial in trials:
            run = self._trial_run(exp, runs, parent.info.run_id, trial)
            self._metrics(run, history.get(trial.id, {}), fresh=run.info.run_id not in runs)
            self._end(run, run_status(trial), trial.finished_at)
        self._end(parent, _SWEEP_STATUS.get(self.sweep.status, "KILLED"), self.sweep.finished_at)
        return self.report

    def _runs(self, exp: str) -> dict[str, Any]:
        """Every active run of the experiment, by id."""
        runs: dict[str, Any] = {}
        token = None
        while True:
            page = self.client.search_runs([exp], max_results=1000, page_token=token)
            runs.update((r.info.run_id, r) for r in page)
            token = page.token
            if not token:
                return runs

    def _parent(self, exp: str, runs: dict[str, Any], params: dict[str, Any]) -> Any:
        tags = {"spx.sweep": self.sweep.name}
        found = runs.get(self.sweep.mlflow_run_id or "") or next(
            (
                r
                for r in runs.values()
                if r.data.tags.get("spx.sweep") == self.sweep.name
                and "spx.trial" not in r.data.tags
            ),
            None,
        )
        return self._ensure(found, exp, self.sweep.name, params, tags)

    def _trial_run(self, exp: str, runs: dict[str, Any], parent: str, trial: TrialRow) -> Any:
        tags = {
            "spx.sweep": self.sweep.name,
            "spx.trial": str(trial.number),
            "mlflow.parentRunId": parent,
        }
        if trial.status == TrialStatus.PRUNED:
            tags["spx.status"] = "PRUNED"
        if trial.error and trial.status != TrialStatus.COMPLETED:
            tags["spx.error"] = trial.error[:5000]
        found = runs.get(trial.mlflow_run_id or "") or next(
            (
                r
                for r in runs.values()
                if r.data.tags.get("spx.sweep") == self.sweep.name
                and r.data.tags.get("spx.trial") == str(trial.number)
            ),
            None,
        )
        run = self._ensure(found, exp, f"trial-{trial.number}", trial.params, tags)
        if run.info.run_id != trial.mlflow_run_id:
            self.store.update_trial(trial.id, mlflow_run_id=run.info.run_id)
        return run

    def _ensure(
        self, run: Any, exp: str, name: str, params: dict[str, Any], tags: dict[str, str]
    ) -> Any:
        """``run`` (created when None) with every param and tag given."""
        from mlflow.entities import Param, RunTag

        if run is None:
            run = self.client.create_run(exp, run_name=name, tags=tags)
            self.report.runs_created += 1
            self.report.tags += len(tags)
        have_params, have_tags = run.data.params, run.data.tags
        new_params = [
            Param(k, param_text(v)) for k, v in sorted(params.items()) if k not in have_params
        ]
        new_tags = [RunTag(k, v) for k, v in tags.items() if have_tags.get(k) != v]
        for i in range(0, len(new_params), 100):
            self.client.log_batch(run.info.run_id, params=new_params[i : i + 100])
        if new_tags:
            self.client.log_batch(run.info.run_id, tags=new_tags)
        self.report.params += len(new_params)
        self.report.tags += len(new_tags)
        return run

    def _history(self, trials: list[TrialRow]) -> dict[int, dict[str, dict[int, float]]]:
        """trial id -> metric name -> step -> value, from the store."""
        out: dict[int, dict[str, dict[int, float]]] = defaultdict(lambda: defaultdict(dict))
        for trial_id, step, name, value in self.store.metric_history([t.id for t in trials]):
            out[trial_id][name][step] = value
        return out

    def _metrics(self, run: Any, series: dict[str, dict[int, float]], fresh: bool) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        missing = []
        for name, points in sorted(series.items()):
            have = set()
            if not fresh and name in run.data.metrics:
                have = {m.step for m in self.client.get_metric_history(run.info.run_id, name)}
            missing += [Metric(name, v, now, s) for s, v in sorted(points.items()) if s not in have]
        for i in range(0, len(missing), _BATCH):
            self.client.log_batch(run.info.run_id, metrics=missing[i : i + _BATCH])
        self.report.metrics += len(missing)

    def _end(self, run: Any, status: str, finished: Any) -> None:
        if run.info.status == status:
            return
        end = int(finished.timestamp() * 1000) if finished is not None else None
        self.client.set_terminated(run.info.run_id, status=status, end_time=end)
        self.report.statuses += 1
