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
import math
from functools import partial
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationError,
    field_validator,
    model_validator,
)

from spx.errors import ConfigError
from spx.search import nas
from spx.search.base import Goal
from spx.search.constraints import Constraints, parse_constraints
from spx.search.nas import ARMS
from spx.search.optuna_search import SAMPLERS, check_space
from spx.search.replicates import SEED_KEY
from spx.search.space import (
    Axis,
    Categorical,
    Condition,
    Conditions,
    FloatRange,
    IntRange,
    Space,
    search_order,
)
from spx.search.strategies import STRATEGIES, StrategyContext, build_strategy
from spx.workers.config import TrialConfig, expand_keys, known_keys
from spx.workers.tasks import build_task, task_class

GRIDS = ("grid", *ARMS)  # methods that enumerate the space (NAS methods add their arms)
SPEC_METHODS = ("grid", "random", "tpe", "cmaes", "nsga2", "qmc", "random-nas", "dass", "oto")
MAX_FILE_BYTES = 1_000_000


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Values(_Strict):
    values: list[Any] = Field(min_length=1)


class Range(_Strict):
    min: float
    max: float
    log: bool = False
    int: bool = False

    @model_validator(mode="after")
    def _check(self) -> Range:
        if not (math.isfinite(self.min) and math.isfinite(self.max)):
            raise ValueError(f"min and max must be finite (got min={self.min}, max={self.max})")
        if self.min > self.max:
            raise ValueError(f"min must not exceed max (got min={self.min}, max={self.max})")
        if self.log and self.min <= 0:
            raise ValueError(f"a log range needs min > 0 (got min={self.min})")
        if self.int and (self.min != round(self.min) or self.max != round(self.max)):
            raise ValueError(f"an int range needs whole bounds (got {self.min}..{self.max})")
        return self

    def axis(self) -> Axis:
        if self.int:
            return IntRange(int(self.min), int(self.max), self.log)
        return FloatRange(self.min, self.max, self.log)


def _axis_kind(value: Any) -> str:
    return "values" if not isinstance(value, dict) or "values" in value else "range"


ParamSpec = Annotated[
    Annotated[Values, Tag("values")] | Annotated[Range, Tag("range")], Discriminator(_axis_kind)
]


class Objective(_Strict):
    metric: str = "val/loss"
    goal: Literal["minimize", "maximize"] = "minimize"


class EarlyStop(_Strict):
    """Stop trials early on ``metric`` (default: the first objective's), judged by an
    Optuna pruner. ``grace``: steps every trial runs before it can be stopped;
    ``reduction``: ASHA's and Hyperband's factor (keep the best 1/reduction at each rung).
    ``goal`` is needed only when ``metric`` is not one of the objectives."""

    type: Literal["asha", "median", "hyperband"]
    metric: str | None = None
    goal: Literal["minimize", "maximize"] | None = None
    grace: int = Field(1, ge=1)
    reduction: int = Field(3, ge=2)


class Resources(_Strict):
    concurrent: int = Field(2, ge=1, le=10_000)
    workers_per_trial: int = Field(1, ge=1, le=1024)
    cpus_per_worker: float = Field(1.0, gt=0, le=1024)
    gpus_per_worker: float = Field(0.0, ge=0, le=64)


class Replicates(_Strict):
    """Run every sampled config once per seed (``train.seed``); the strategy learns the mean."""

    seeds: list[Annotated[int, Field(ge=0, le=2**31 - 1)]] = Field(min_length=1, max_length=100)

    @field_validator("seeds")
    @classmethod
    def _distinct(cls, v: list[int]) -> list[int]:
        if len(set(v)) != len(v):
            raise ValueError("give each seed once")
        return v


class SweepSpec(_Strict):
    """A sweep file. Beside the searched ``parameters`` it may say:

    - ``conditions``: ``{key: {parent: value or [values]}}`` searches ``key`` only while the
      parameter ``parent`` (one with ``values``) takes one of those values; several parents
      must all hold. Elsewhere ``key`` is absent from the trial's parameters, so the trial
      keeps the default, or the value under ``fixed`` (a conditional key may be in both).
      Grid runs the union of the grids (each config once); random search and the Optuna
      samplers draw the parent first.
    - ``constraints``: texts such as ``"prune.schedule.start < prune.schedule.end"`` that
      compare trial keys and numbers with ``< <= > >= == !=`` (chains allowed). Each trial's
      full config (defaults, fixed keys, parameters) must meet them before it is submitted:
      grid drops the points that break one, random search draws again, Optuna skips the
      trial. A constraint no config of the space meets is an error.
    - ``replicates: {seeds: [0, 1, 2]}``: each sampled config runs once per seed
      (``train.seed``); ``trials`` counts configs, so the sweep runs trials x seeds runs,
      and an adaptive method learns from each config's mean.

    >>> spec = parse_spec('''
    ... name: demo
    ... task: digits-mlp
    ... parameters:
    ...   prune.method: {values: [magnitude, nm]}
    ...   prune.nm: {values: ["2:4", "1:4"]}
    ... conditions:
    ...   prune.nm: {prune.method: nm}
    ... ''')
    >>> [(c.prune.method, c.prune.nm) for c in resolve_trials(spec)]
    [('magnitude', '2:4'), ('nm', '2:4'), ('nm', '1:4')]
    """

    name: str = Field(min_length=1, max_length=200)
    task: str
    method: str = "grid"
    seed: int = Field(0, ge=0, le=2**31 - 1)
    trials: int | None = Field(None, ge=1, le=1_000_000)
    objective: Objective | list[Objective] = Objective()
    fixed: dict[str, Any] = {}
    parameters: dict[str, ParamSpec] = {}
    conditions: dict[str, dict[str, Any]] = {}
    constraints: list[str] = Field([], max_length=1000)
    replicates: Replicates | None = None
    early_stop: EarlyStop | None = None
    resources: Resources = Resources()
    retries: int = Field(1, ge=0, le=100)
    description: str = ""

    @field_validator("name")
    @classmethod
    def _printable(cls, v: str) -> str:
        if not v.strip() or not v.isprintable() or "/" in v:
            raise ValueError("a sweep name must be printable text without '/'")
        return v

    @field_validator("task")
    @classmethod
    def _task(cls, v: str) -> str:
        try:
            task_class(v)
        except ConfigError as exc:
            raise ValueError(exc.reason) from None
        return v

    @field_validator("method")
    @classmethod
    def _method(cls, v: str) -> str:
        if v not in SPEC_METHODS:
            raise ValueError(f"unknown method {v!r}; choose one of {list(SPEC_METHODS)}")
        if v not in STRATEGIES:
            raise ValueError(
                f"method {v!r} is not available in this version of spx; "
                f"available: {sorted(STRATEGIES)}"
            )
        return v

    @property
    def objectives(self) -> list[Objective]:
        return self.objective if isinstance(self.objective, list) else [self.objective]

    def space(self) -> Space:
        return {
            k: Categorical(tuple(p.values)) if isinstance(p, Values) else p.axis()
            for k, p in self.parameters.items()
        }

    def search_conditions(self) -> Conditions:
        return tuple(
            Condition(key, parent, tuple(v) if isinstance(v, list) else (v,))
            for key, parents in self.conditions.items()
            for parent, v in parents.items()
        )

    def seeds(self) -> tuple[int, ...]:
        """The replicate seeds (empty: each config runs once)."""
        return tuple(self.replicates.seeds) if self.replicates else ()

    def budget(self) -> int:
        return self.trials if self.trials is not None else 10

    def stop_target(self) -> tuple[str, Goal] | None:
        """The metric early termination watches and its goal (None: no early_stop)."""
        if self.early_stop is None:
            return None
        metric = self.early_stop.metric or self.objectives[0].metric
        goals = {o.metric: o.goal for o in self.objectives}
        goal = self.early_stop.goal or goals.get(metric)
        if goal is None:
            raise ConfigError(
                f"say whether {metric} should be minimized or maximized (it is no objective)",
                field="early_stop.goal",
            )
        return metric, goal


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
    """Read and validate a sweep file (``name`` overrides its name); returns spec and text."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError("sweep file not found", field="file", value=str(path))
    raw = path.read_bytes()
    if len(raw) > MAX_FILE_BYTES:
        raise ConfigError(f"sweep file is larger than {MAX_FILE_BYTES} bytes", field="file")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError("sweep file is not UTF-8 text", field="file", value=str(path)) from None
    return parse_spec(text, name), text


def parse_spec(text: str, name: str | None = None) -> SweepSpec:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError(f"not valid YAML{where}: {getattr(exc, 'problem', exc)}") from None
    if not isinstance(data, dict):
        raise ConfigError("a sweep file must be a YAML mapping of keys", field="file", value=data)
    if name is not None:
        data["name"] = name
    try:
        spec = SweepSpec.model_validate(data)
    except ValidationError as exc:
        raise _schema_error(exc) from None
    _check_axes(spec)
    _check_search(spec)
    _check_conditions(spec)
    _check_replicates(spec)
    _check_reported(spec, resolve_trials(spec))
    _check_comm(spec)
    return spec


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
                f"no trial of this sweep reports {metric!r}; {did}"
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

    An adaptive method's configs depend on results not yet known: it is previewed, and
    validated, by random draws from the same space.
    """
    method = "random" if spec.method in SAMPLERS else spec.method
    strategy = build_strategy(method, strategy_context(spec))
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
    """What the method and early termination need of the space and the objectives."""
    metrics = [o.metric for o in spec.objectives]
    if not metrics:
        raise ConfigError("give at least one objective", field="objective", value=[])
    if len(set(metrics)) != len(metrics):
        raise ConfigError("each objective must name a different metric", field="objective")
    if spec.method in SAMPLERS:
        check_space(spec.method, spec.space(), len(spec.objectives))
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
    TrialConfig.from_flat(spec.task, dict(spec.fixed), "fixed.")
    for key, axis in spec.parameters.items():
        if spec.method in GRIDS and isinstance(axis, Range):
            raise ConfigError(
                f"method {spec.method} runs a grid: it needs a list of values, not a min/max range",
                field=f"parameters.{key}",
            )
        probes = axis.values if isinstance(axis, Values) else [axis.min, axis.max]
        if isinstance(axis, Range) and axis.int:
            probes = [int(p) for p in probes]
        for i, value in enumerate(probes):
            where = f"parameters.{key}.values[{i}]" if isinstance(axis, Values) else None
            try:
                TrialConfig.from_flat(spec.task, {**spec.fixed, key: value})
            except ConfigError as exc:
                bound = ("min", "max")[i] if isinstance(axis, Range) else ""
                raise ConfigError(
                    exc.reason,
                    field=where or f"parameters.{key}.{bound}",
                    value=value,
                ) from None


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
    msg = err["msg"].removeprefix("Value error, ")
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
