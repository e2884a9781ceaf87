"""Where a sweep's starting weights come from: ``init.from``, resolved against the store.

A sweep file may name trained weights that every trial starts from (workers/warmstart.py):
``init.from: {sweep: NAME, trial: N}``, ``{sweep: NAME, trial: best}`` (the best COMPLETED
trial by that sweep's first objective) or a model folder ``spx sweep export-model`` wrote
(relative to the sweep file). ``spx sweep validate`` and launch resolve it before any trial
runs (:func:`check`): a missing sweep, trial or folder, a trial that did not complete, a
source sweep that is still running, or weights of another architecture (a tensor missing,
or of another shape) are a ConfigError naming ``fixed.init.from`` and its value, and no
sweep is recorded.

Launch then (:func:`bind`) exports the source trial once, as its masked full model (the
compact one would not fit a trial of the same architecture), into
``SPX_HOME/models/<sweep id>-<sweep>/trial-NNNNN/``; the next sweep from the same trial
reuses it. Every trial's config carries the lineage as ``init.*`` keys: the folder it
loads, the source's sweep and trial, the source trial's config hash (sha256 of its stored
config as canonical JSON) and the weights' sha256. They are stored with the trial (its
params: no column of their own), logged as its MLflow params, tagged on the sweep's and
the trials' runs (``spx.init.*``, :func:`run_tags`) and shown by ``spx sweep show``
(:func:`describe`). A resumed sweep keeps the lineage its trials were launched with.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from spx.errors import ConfigError, NotFoundError
from spx.platform import paths
from spx.platform.settings import Settings
from spx.platform.store import Store, SweepRow, SweepStatus, TrialRow, TrialStatus
from spx.workers.warmstart import (
    WEIGHTS,
    InitConfig,
    InitSource,
    Shapes,
    check_shapes,
    file_sha256,
    file_shapes,
    model_shapes,
)

if TYPE_CHECKING:
    from spx.platform.sweep_models import SweepSpec

FIELD = "fixed.init.from"
RESOLVED = tuple(f"init.{key}" for key in InitConfig.RESOLVED)
"""The ``init.*`` keys spx sets from ``init.from``, never a sweep file."""
_ENDED_SWEEP = (SweepStatus.COMPLETED, SweepStatus.FAILED, SweepStatus.STOPPED)
_ENDED_TRIAL = (TrialStatus.COMPLETED, TrialStatus.PRUNED, TrialStatus.FAILED)


@dataclass(frozen=True)
class Source:
    """A resolved ``init.from``: the folder trials load and the lineage it records."""

    given: Any
    """What the sweep file said (echoed in errors)."""
    folder: Path
    shapes: Shapes
    sweep: str | None
    trial: int | None
    config_hash: str | None
    export: tuple[SweepRow, TrialRow] | None = None
    """The source trial, which launch exports into ``folder`` (None: a model folder)."""

    def describe(self) -> str:
        where = f"sweep {self.sweep!r} trial {self.trial}" if self.sweep else ""
        if self.export is None:  # a model folder (which may name the trial it came from)
            where = f"{self.folder} ({where})" if where else str(self.folder)
        config = f", config {self.config_hash[:12]}" if self.config_hash else ""
        return f"starts from {where}{config}"


def check(spec: SweepSpec, store: Store | None, settings: Settings) -> Source | None:
    """Resolve the sweep's ``init.from`` (None: it has none); writes nothing. ``store``
    None: there is no store (so no source sweep either)."""
    init = requested(spec)
    if init is None:
        return None
    if init.path is not None:
        source = _from_folder(spec, init)
    elif store is None:
        raise ConfigError(
            f"no sweep named {init.sweep!r}: there is no store yet", field=FIELD, value=init.echo()
        )
    else:
        source = _from_trial(store, settings, init)
    _check_architecture(spec, source)
    return source


def validate(spec: SweepSpec, settings: Settings) -> Source | None:
    """:func:`check` for ``spx sweep validate``, which creates no store where there is none."""
    from spx.platform.readonly import require_store

    if requested(spec) is None:
        return None
    try:
        require_store(settings.store_url)
    except NotFoundError:
        return check(spec, None, settings)
    with Store.open(settings.store_url) as store:
        return check(spec, store, settings)


def bind(
    spec: SweepSpec, store: Store, settings: Settings, trials: Sequence[TrialRow] = ()
) -> SweepSpec:
    """The spec whose trial configs carry the resolved lineage (``init.*``): the source
    exported once and its weights' checksum taken. ``trials``: a resumed sweep's rows,
    whose lineage is kept as it was launched."""
    stored = next((t.params for t in trials if t.params.get("init.sha256")), None)
    if stored is not None:
        keys = {key: stored.get(key) for key in RESOLVED}
    else:
        source = check(spec, store, settings)
        if source is None:
            return spec
        if source.export is not None:
            _export_once(settings, *source.export, source.folder)
        keys = {
            "init.folder": str(source.folder),
            "init.sweep": source.sweep,
            "init.trial": source.trial,
            "init.config_hash": source.config_hash,
            "init.sha256": file_sha256(source.folder / WEIGHTS),
        }
    return spec.model_copy(update={"fixed": {**spec.fixed, **keys}})


def requested(spec: SweepSpec) -> InitSource | None:
    """The sweep's ``init.from`` as its file gives it (None: it starts from scratch)."""
    from spx.platform.spec import trial_config

    source = trial_config(spec, {}).init.source
    return source if source.given else None


def run_tags(params: dict[str, Any]) -> dict[str, str]:
    """MLflow tags of a run whose (flat) config has a lineage: ``spx.init.*``."""
    if not params.get("init.sha256"):
        return {}
    return {f"spx.{k}": str(params[k]) for k in RESOLVED if params.get(k) is not None}


def lineages(trials: Iterable[TrialRow]) -> list[dict[str, Any]]:
    """Each distinct lineage among ``trials``: its ``init.*`` keys (``init.from.path`` too)."""
    found: list[dict[str, Any]] = []
    for t in trials:
        if t.params.get("init.sha256"):
            keys = {k: t.params.get(k) for k in ("init.from.path", *RESOLVED)}
            if keys not in found:
                found.append(keys)
    return found


def describe(lineage: dict[str, Any]) -> str:
    """One line saying where a trial's weights came from (``spx sweep show``)."""
    sweep, path = lineage.get("init.sweep"), lineage.get("init.from.path")
    where = f"sweep {sweep!r} trial {lineage.get('init.trial')}" if sweep else ""
    if path:
        where = f"{path} ({where})" if where else str(path)
    config = lineage.get("init.config_hash")
    said = f"config {str(config)[:12]}, " if config else ""
    return f"starts from {where}: {said}weights sha256 {str(lineage['init.sha256'])[:12]}"


def best_trial(trials: Iterable[TrialRow], metric: str, goal: str) -> TrialRow | None:
    """The COMPLETED trial with the best finite ``metric`` (``goal``: minimize|maximize)."""
    sign = 1.0 if goal == "minimize" else -1.0
    scored = [
        (sign * value, t.number, t)
        for t in trials
        if t.status == TrialStatus.COMPLETED and (value := _finite(t.metrics, metric)) is not None
    ]
    return min(scored, key=lambda s: s[:2])[2] if scored else None


def config_hash(params: dict[str, Any]) -> str:
    """sha256 of a trial's flat config as canonical JSON (sorted keys)."""
    text = json.dumps(params, sort_keys=True, default=str, allow_nan=True)
    return hashlib.sha256(text.encode()).hexdigest()


def cache_folder(settings: Settings, sweep: SweepRow, number: int) -> Path:
    """Where launch exports trial ``number`` of ``sweep`` for the sweeps that start from it."""
    folder = settings.home / "models" / f"{sweep.id}-{paths.file_name(sweep.name)}"
    return paths.trial_folder(folder, number)


# -- resolving ---------------------------------------------------------------------------


def _from_trial(store: Store, settings: Settings, init: InitSource) -> Source:
    given = init.echo()
    try:
        sweep = store.get_sweep(str(init.sweep))
    except NotFoundError:
        raise ConfigError(
            f"no sweep named {init.sweep!r} in the store: launch that sweep first "
            "(`spx sweep list` shows the sweeps there)",
            field=FIELD,
            value=given,
        ) from None
    trials = store.trials(sweep.id)
    if sweep.status not in _ENDED_SWEEP:
        done = sum(t.status in _ENDED_TRIAL for t in trials)
        raise ConfigError(
            f"the source sweep {sweep.name!r} is still {sweep.status} ({done} of its "
            f"{len(trials)} trials done so far); launch this sweep again once it has finished "
            f"(spx sweep status {sweep.name} --watch)",
            field=FIELD,
            value=given,
        )
    trial = _pick(sweep, trials, init)
    checkpoint = paths.trial_folder(paths.sweep_folder(settings, sweep), trial.number)
    if not (checkpoint / "checkpoint").is_dir():
        raise ConfigError(
            f"trial {trial.number} of sweep {sweep.name!r} left no checkpoint at "
            f"{checkpoint / 'checkpoint'} (is SPX_HOME the one it ran under?)",
            field=FIELD,
            value=given,
        )
    shapes = _trial_shapes(settings, sweep, trial, given)
    folder = cache_folder(settings, sweep, trial.number)
    return Source(
        given, folder, shapes, sweep.name, trial.number, config_hash(trial.params), (sweep, trial)
    )


def _pick(sweep: SweepRow, trials: list[TrialRow], init: InitSource) -> TrialRow:
    """The trial ``init.from`` names: its number, or the best by the sweep's objective."""
    given = init.echo()
    if init.trial == "best":
        metric, goal = _objective(sweep)
        best = best_trial(trials, metric, goal)
        if best is None:
            raise ConfigError(
                f"sweep {sweep.name!r} has no COMPLETED trial that reported {metric} "
                f"({len(trials)} trials in all) to pick the best from",
                field=FIELD,
                value=given,
            )
        return best
    found = next((t for t in trials if t.number == init.trial), None)
    if found is None:
        numbers = f"0-{max(t.number for t in trials)}" if trials else "none"
        raise ConfigError(
            f"sweep {sweep.name!r} has no trial {init.trial} (its trials: {numbers})",
            field=FIELD,
            value=given,
        )
    if found.status != TrialStatus.COMPLETED:
        raise ConfigError(
            f"trial {found.number} of sweep {sweep.name!r} is {found.status}, not COMPLETED: "
            "start from a trial that finished",
            field=FIELD,
            value=given,
        )
    return found


def _objective(sweep: SweepRow) -> tuple[str, str]:
    """The stored sweep's first objective (metric, goal)."""
    from spx.platform.limits import load_yaml
    from spx.platform.sweep_models import Objective

    raw = (load_yaml(sweep.spec_text) or {}).get("objective") or {}
    first = Objective.model_validate(raw[0] if isinstance(raw, list) else raw)
    return first.metric, first.goal


def _trial_shapes(settings: Settings, sweep: SweepRow, trial: TrialRow, given: Any) -> Shapes:
    """The shapes of the source trial's model, built from its stored config (no memory)."""
    import torch

    from spx.workers.config import TrialConfig
    from spx.workers.tasks import build_task

    try:
        cfg = TrialConfig.from_flat(sweep.task, dict(trial.params))
    except ConfigError as exc:
        raise ConfigError(
            f"trial {trial.number} of sweep {sweep.name!r} has a config this spx cannot "
            f"read ({exc})",
            field=FIELD,
            value=given,
        ) from None
    if cfg.nas.method != "none":
        raise ConfigError(
            f"trial {trial.number} of sweep {sweep.name!r} trained the network its "
            f"nas.method {cfg.nas.method} found, not the task's model; start from a trial "
            "with nas.method none",
            field=FIELD,
            value=given,
        )
    with torch.device("meta"):
        model = build_task(cfg.task, settings.home / "data").build_model(cfg)
    return model_shapes(model)


def _from_folder(spec: SweepSpec, init: InitSource) -> Source:
    from spx.platform.export import MANIFEST
    from spx.workers.config import flatten

    given = init.echo()
    folder = Path(str(init.path)).expanduser()
    if not folder.is_absolute() and spec.import_path:
        folder = Path(spec.import_path[0]) / folder  # beside the sweep file
    folder = folder.resolve()
    if not folder.is_dir():
        raise ConfigError(f"no model folder at {folder}", field=FIELD, value=given)
    if not (folder / MANIFEST).is_file():
        hint = ""
        if (folder / "config.json").is_file():
            hint = "; a transformers model folder is for task hf-causal-lm's model.path"
        raise ConfigError(
            f"{folder} holds no model `spx sweep export-model` wrote (no {MANIFEST}){hint}",
            field=FIELD,
            value=given,
        )
    if not (folder / WEIGHTS).is_file():
        raise ConfigError(f"{folder} has no {WEIGHTS}", field=FIELD, value=given)
    try:
        manifest = json.loads((folder / MANIFEST).read_text())
        config = {k: v for k, v in flatten(manifest["config"]).items() if k != "task"}
        shapes = file_shapes(folder / WEIGHTS)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError(
            f"cannot read the model in {folder} ({type(exc).__name__}: {exc})",
            field=FIELD,
            value=given,
        ) from None
    sweep, trial = manifest.get("sweep"), manifest.get("trial")
    return Source(given, folder, shapes, sweep, trial, config_hash(config))


def _check_architecture(spec: SweepSpec, source: Source) -> None:
    """Every trial's model (each distinct ``model.*`` once, on the meta device) must have
    exactly the source's tensors, each of the same shape."""
    import torch

    from spx.platform.spec import resolve_trials
    from spx.workers.tasks import build_task

    task = build_task(spec.task)
    seen: set[str] = set()
    for cfg in resolve_trials(spec):
        key = cfg.model.model_dump_json()
        if key in seen:
            continue
        seen.add(key)
        with torch.device("meta"):
            model = task.build_model(cfg)
        check_shapes(model_shapes(model), source.shapes, source.given, FIELD)


# -- exporting ---------------------------------------------------------------------------


def _export_once(settings: Settings, sweep: SweepRow, trial: TrialRow, folder: Path) -> None:
    """Export the trial's masked model into ``folder``, unless an earlier launch did."""
    from spx.platform.export import export_trial

    if _cached(folder, sweep, trial):
        return
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = folder.with_name(f"{folder.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        export_trial(settings, sweep, trial, tmp, force=True, compact=False)
        if _cached(folder, sweep, trial):  # another launch finished it meanwhile: keep theirs
            return
        shutil.rmtree(folder, ignore_errors=True)  # what an interrupted export left
        os.replace(tmp, folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _cached(folder: Path, sweep: SweepRow, trial: TrialRow) -> bool:
    from spx.platform.export import MANIFEST

    try:
        manifest = json.loads((folder / MANIFEST).read_text())
    except (OSError, ValueError):
        return False
    same = manifest.get("sweep") == sweep.name and manifest.get("trial") == trial.number
    return same and "kept" not in manifest and (folder / WEIGHTS).is_file()


def _finite(metrics: dict[str, Any] | None, metric: str) -> float | None:
    value = (metrics or {}).get(metric)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value)
