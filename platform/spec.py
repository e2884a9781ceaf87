"""The sweep file: a validated :class:`SweepSpec`, or a ConfigError naming the field.

Loading does everything that can fail on bad input before anything is written: YAML
parsing (safe loader), the schema, the method and task names, every trial key and value,
and every task-specific rule on the resolved trial configs.

>>> spec = parse_spec('''
... name: demo
... task: digits-mlp
... method: grid
... parameters:
...   prune.sparsity: {values: [0.5, 0.9]}
... ''')
>>> spec.name, len(resolve_trials(spec))
('demo', 2)
"""

from __future__ import annotations

import difflib
import hashlib
import sys
from functools import partial
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from spx.errors import ConfigError, short_repr
from spx.platform.limits import check_grid, load_yaml, read_text
from spx.platform.sweep_models import (
    EarlyStop,
    Objective,
    ParamSpec,
    Range,
    Replicates,
    Resources,
    SweepSpec,
    Values,
)
from spx.search import nas
from spx.search.base import Strategy
from spx.search.constraints import Constraints, parse_constraints
from spx.search.replicates import SEED_KEY
from spx.search.space import Categorical, search_order
from spx.search.strategies import StrategyContext, build_strategy, strategy_class
from spx.workers.config import TrialConfig, expand_keys, known_keys, type_reason
from spx.workers.tasks import build_task

__all__ = [
    "EarlyStop",
    "Objective",
    "ParamSpec",
    "Range",
    "Replicates",
    "Resources",
    "SweepSpec",
    "Values",
    "ask_trials",
    "full_config",
    "load_spec",
    "parse_spec",
    "resolve_trials",
    "spec_hash",
    "strategy_context",
    "trial_config",
]


def strategy_context(spec: SweepSpec, storage_url: str | None = None) -> StrategyContext:
    """What the sweep's strategy is built from; ``storage_url``: its Optuna study's home."""
    return StrategyContext(
        space=spec.space(),
        trials=spec.budget(),
        seed=spec.seed,
        goals=tuple(o.goal for o in spec.objectives),
        storage_url=storage_url,
        study_name=spec.name,
        conditions=spec.search_conditions(),
        constraints=Constraints(
            parse_constraints(spec.constraints, known_keys()), partial(full_config, spec)
        ),
        replicates=spec.seeds(),
    )


def full_config(spec: SweepSpec, params: dict[str, Any]) -> dict[str, Any]:
    """A trial's whole config as dotted keys: the defaults, the fixed keys and ``params``."""
    flat = {**spec.fixed, **params}
    try:
        return TrialConfig.from_flat(spec.task, flat).flat()
    except ConfigError:
        # A config the model rejects (say start > end) can still break a constraint, which
        # then drops it; one that meets them all fails validation as before.
        return {**TrialConfig(task=spec.task).flat(), **expand_keys(flat)}


def load_spec(path: str | Path, name: str | None = None) -> tuple[SweepSpec, str]:
    """Read and validate a sweep file (``name`` overrides its name); returns spec and text.

    A custom task (``task: module:Class``) may live beside the file: its folder joins the
    import path, here and in every Ray worker (``spec.import_path``)."""
    text = read_text(Path(path))
    return parse_spec(text, name, Path(path).resolve().parent), text


def parse_spec(text: str, name: str | None = None, folder: Path | None = None) -> SweepSpec:
    """Validate a sweep file's text; ``folder``: its folder, where a custom task may live."""
    data = load_yaml(text)
    if not isinstance(data, dict):
        raise ConfigError("a sweep file must be a YAML mapping of keys", field="file", value=data)
    if name is not None:
        data["name"] = name
    if isinstance(data.get("fixed"), dict):
        data["fixed"] = _source_folder(data["fixed"])
    if folder is not None and str(folder) not in sys.path:
        # Appended, not prepended: a file beside the sweep never shadows a library module.
        sys.path.append(str(folder))
    try:
        spec = SweepSpec.model_validate(data, context={"folder": folder})
    except ValidationError as exc:
        raise _schema_error(exc) from None
    if folder is not None:
        spec._import_path = (str(folder),)
    _check_init_keys(spec)
    _check_axes(spec)
    _check_search(spec)
    _check_conditions(spec)
    _check_replicates(spec)
    _check_grid(spec)
    configs = resolve_trials(spec)
    _check_init(spec, configs)
    _check_reported(spec, configs)
    _check_grace(spec, configs)
    _check_comm(spec)
    return spec


def _source_folder(fixed: dict[str, Any]) -> dict[str, Any]:
    """``init.from: FOLDER`` is ``init.from.path: FOLDER`` (a sweep's trial is a mapping)."""
    out: dict[str, Any] = {}
    for key, value in fixed.items():
        if key == "init.from" and isinstance(value, str):
            out["init.from.path"] = value
        elif key == "init" and isinstance(value, dict) and isinstance(value.get("from"), str):
            out[key] = {**value, "from": {"path": value["from"]}}
        else:
            out[key] = value
    return out


def _check_init_keys(spec: SweepSpec) -> None:
    """``init.from`` is one source per sweep, under ``fixed``; spx sets the other
    ``init.*`` keys itself when it resolves it against the store (lineage.py)."""
    for key, axis in spec.parameters.items():
        for value in axis.values if isinstance(axis, Values) else [None]:
            if any(k.startswith("init.") for k in expand_keys({key: value})):
                raise ConfigError(
                    "a sweep starts from one source: give init.from under fixed "
                    "(one sweep per source)",
                    field=f"parameters.{key}",
                )
    for key in expand_keys(dict(spec.fixed)):
        if key.startswith("init.") and not key.startswith("init.from."):
            raise ConfigError(
                "spx sets this key when it resolves init.from; give init.from only",
                field=f"fixed.{key}",
            )


def _check_init(spec: SweepSpec, configs: list[TrialConfig]) -> None:
    """What ``init.from`` cannot start: a model from model.path, an architecture search."""
    cfg = configs[0]
    if cfg.init.source.given and any(c.model.path is not None for c in configs):
        raise ConfigError(
            "this trial's model is loaded from model.path (a transformers model folder for "
            "task hf-causal-lm); give that folder as model.path, not init.from",
            field="fixed.init.from",
            value=cfg.init.source.echo(),
        )
    if cfg.init.source.given and any(c.nas.method != "none" for c in configs):
        raise ConfigError(
            "init.from starts the task's model from trained weights; an architecture "
            "search (nas.method) builds a network of its own",
            field="fixed.init.from",
            value=cfg.init.source.echo(),
        )


def _check_grace(spec: SweepSpec, configs: list[TrialConfig]) -> None:
    """A grace as long as the longest trial stops nothing: every trial would end first."""
    if spec.early_stop is None:
        return
    steps = max(c.train.steps for c in configs)
    axis = spec.parameters.get("train.steps")  # an adaptive method may draw past the preview
    if isinstance(axis, Range):
        steps = max(steps, int(axis.max))
    elif isinstance(axis, Values):
        steps = max([steps] + [v for v in axis.values if type(v) is int])
    grace = spec.early_stop.grace
    if grace >= steps:
        raise ConfigError(
            f"every trial ends within the grace: the longest runs {steps} steps (train.steps), "
            f"so early termination could never stop one; give a grace below {steps}",
            field="early_stop.grace",
            value=grace,
        )


def _check_grid(spec: SweepSpec) -> None:
    """An enumerating method's points x arms x seeds are counted before they are built."""
    strategy = strategy_class(spec.method)
    if strategy.enumerates:
        values = {k: a for k, a in spec.space().items() if isinstance(a, Categorical)}
        runs = max(len(strategy.arms), 1) * max(len(spec.seeds()), 1)
        check_grid(values, spec.search_conditions(), runs)


def _check_reported(spec: SweepSpec, configs: list[TrialConfig]) -> None:
    """Each objective (and the early-stop metric) must be a metric some trial reports."""
    task = build_task(spec.task)
    workers = spec.resources.workers_per_trial
    reported = set().union(*(nas.reported_metrics(c, task, workers) for c in configs))
    wanted = [(f"objective[{i}].metric", o.metric) for i, o in enumerate(spec.objectives)]
    if not isinstance(spec.objective, list):
        wanted = [("objective.metric", spec.objective.metric)]
    if spec.early_stop is not None and spec.early_stop.metric is not None:
        wanted.append(("early_stop.metric", spec.early_stop.metric))
    for field, metric in wanted:
        if metric not in reported:
            hint = difflib.get_close_matches(metric, sorted(reported), n=1)
            did = f"did you mean {hint[0]!r}? " if hint else ""
            raise ConfigError(
                f"no trial of this sweep reports {short_repr(metric)}; {did}"
                f"they report: {', '.join(sorted(reported))}",
                field=field,
                value=metric,
            )


def _check_comm(spec: SweepSpec) -> None:
    """``comm.*`` keys only mean something when a trial spans several workers."""
    if spec.resources.workers_per_trial > 1:
        return
    for where, keys in (("fixed.", spec.fixed), ("parameters.", spec.parameters)):
        for key in keys:
            if key == "comm" or key.startswith("comm."):
                raise ConfigError(
                    "comm.* keys need resources.workers_per_trial > 1 (this trial has one worker)",
                    field=f"{where}{key}",
                )


def spec_hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def resolve_trials(spec: SweepSpec, limit: int | None = None) -> list[TrialConfig]:
    """The trial configs the sweep will run (the first ``limit`` of them), validated.

    An adaptive method's configs depend on results not yet known: it is validated by random
    draws from the same space (what launch will run: :func:`spx.platform.preview.preview`).
    """
    method = "random" if strategy_class(spec.method).adaptive else spec.method
    return ask_trials(spec, build_strategy(method, strategy_context(spec)), limit)


def ask_trials(spec: SweepSpec, strategy: Strategy, limit: int | None = None) -> list[TrialConfig]:
    """The first ``limit`` configs ``strategy`` suggests (all of them: None), validated."""
    task = build_task(spec.task)
    out: list[TrialConfig] = []
    while limit is None or len(out) < limit:
        suggestion = strategy.ask()
        if suggestion is None:
            break
        where = "parameters." if suggestion.params else "fixed."
        cfg = TrialConfig.from_flat(spec.task, {**spec.fixed, **suggestion.params}, where)
        searched = set(expand_keys(suggestion.params))
        for check in (task.validate, partial(nas.validate, task=task)):
            try:
                check(cfg)
            except ConfigError as exc:  # name the block the offending key came from
                fixed = exc.field in spec.fixed and exc.field not in searched
                block = "fixed." if fixed else where
                keyed = exc.field in known_keys()  # a trial key; else a sweep key (task)
                field = f"{block}{exc.field}" if keyed else exc.field
                raise ConfigError(exc.reason, field=field, value=exc.value) from None
        out.append(cfg)
    if not out:
        raise ConfigError("the sweep resolves to no trials", field="parameters")
    return out


def trial_config(spec: SweepSpec, params: dict[str, Any]) -> TrialConfig:
    return TrialConfig.from_flat(spec.task, {**spec.fixed, **params})


def _check_search(spec: SweepSpec) -> None:
    """What early termination needs, and the objectives (the method's own checks run with
    the axes')."""
    metrics = [o.metric for o in spec.objectives]
    if not metrics:
        raise ConfigError("give at least one objective", field="objective", value=[])
    if len(set(metrics)) != len(metrics):
        raise ConfigError("each objective must name a different metric", field="objective")
    spec.stop_target()


def _check_conditions(spec: SweepSpec) -> None:
    """Conditions name searched keys and values of a categorical parent, with no cycle;
    constraints parse and name trial keys."""
    for key, parents in spec.conditions.items():
        if not parents:
            raise ConfigError("name the parameter it depends on", field=f"conditions.{key}")
    search_order(spec.space(), spec.search_conditions())
    parse_constraints(spec.constraints, known_keys())


def _check_replicates(spec: SweepSpec) -> None:
    """Replicates set train.seed themselves: it cannot be fixed, searched or constrained."""
    if spec.replicates is None:
        return
    for where, keys in (("fixed", spec.fixed), ("parameters", spec.parameters)):
        if SEED_KEY in keys:
            raise ConfigError(
                f"replicates set {SEED_KEY} per run; remove it from {where}",
                field="replicates.seeds",
                value=spec.replicates.seeds,
            )
    for i, rule in enumerate(parse_constraints(spec.constraints, known_keys())):
        if SEED_KEY in rule.keys:
            raise ConfigError(
                f"replicates set {SEED_KEY} per run, after the constraints are judged",
                field=f"constraints[{i}]",
                value=rule.text,
            )


def _check_axes(spec: SweepSpec) -> None:
    """Each key must be a trial key, and every value or bound of an axis must be valid."""
    # A conditional key may also be fixed: the fixed value holds where it is not searched.
    both = (set(spec.fixed) & set(spec.parameters)) - set(spec.conditions)
    if both:
        key = sorted(both)[0]
        raise ConfigError(
            "a key cannot be both fixed and searched (unless a condition says when it is searched)",
            field=f"parameters.{key}",
        )
    _check_set_once(spec.fixed)
    TrialConfig.from_flat(spec.task, dict(spec.fixed), "fixed.")
    # What the method cannot search (a grid's ranges, ...) before the values are probed.
    strategy_class(spec.method).check(spec.space(), len(spec.objectives))
    for key, axis in spec.parameters.items():
        probes = axis.values if isinstance(axis, Values) else [axis.min, axis.max]
        if isinstance(axis, Range) and axis.int:
            probes = [int(p) for p in probes]
        for i, value in enumerate(probes):
            where = f"parameters.{key}.values[{i}]" if isinstance(axis, Values) else None
            try:
                TrialConfig.from_flat(spec.task, {**spec.fixed, key: value})
            except ConfigError as exc:
                bound = ("min", "max")[i] if isinstance(axis, Range) else ""
                reason = exc.reason
                if isinstance(axis, Range) and reason.startswith("must be a whole number"):
                    reason = "a whole-number key needs a range with `int: true`"
                raise ConfigError(
                    reason,
                    field=where or f"parameters.{key}.{bound}",
                    value=value,
                ) from None


def _check_set_once(fixed: dict[str, Any]) -> None:
    """``train.steps`` and ``train: {steps: ...}`` are one key: the YAML loader cannot see
    that it is given twice, so ``fixed`` is checked once its mappings are expanded."""
    first: dict[str, str] = {}
    for name, value in fixed.items():
        for key in expand_keys({name: value}):
            if key in first:
                raise ConfigError(
                    f"this key is given twice (under {first[key]!r} and under {name!r}); keep one",
                    field=f"fixed.{key}",
                )
            first[key] = name


def _schema_error(exc: ValidationError) -> ConfigError:
    err = exc.errors()[0]
    loc = [str(p) for p in err["loc"]]
    # Union members (Values | Range) add their class name to the location: drop it.
    loc = [p for p in loc if p not in {"values", "range", "Objective", "list[Objective]"}]
    field = ".".join(loc) or None
    if err["type"] == "extra_forbidden":
        return _unknown_key(loc)
    if err["type"] == "missing":
        return ConfigError("required key is missing", field=field)
    msg = type_reason(err) or err["msg"].removeprefix("Value error, ")
    value = err.get("input", ...)
    return ConfigError(msg, field=field, value=value if not isinstance(value, dict) else ...)


def _unknown_key(loc: list[str]) -> ConfigError:
    model: Any = SweepSpec
    for part in loc[:-1]:
        info = getattr(model, "model_fields", {}).get(part)
        annotation = getattr(info, "annotation", None)
        model = annotation if isinstance(annotation, type) else None
        if model is None:
            break
    names = list(getattr(model, "model_fields", {})) if model else []
    if loc[:1] == ["parameters"]:
        names = ["values", "min", "max", "log", "int"]
    hint = difflib.get_close_matches(loc[-1], names, n=1)
    msg = f"unknown key; did you mean {hint[0]!r}?" if hint else "unknown key"
    if names and not hint:
        msg += f" (allowed: {', '.join(names)})"
    return ConfigError(msg, field=".".join(loc))
