"""The sweep file's schema: the pydantic models a sweep file's mapping must fit.

:mod:`spx.platform.spec` loads a file into :class:`SweepSpec` and runs the checks that need
more than one key (or the trial configs); this module holds the shapes and the rules of
single values.
"""

from __future__ import annotations

import importlib.util
import math
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    PrivateAttr,
    Tag,
    ValidationInfo,
    field_validator,
    model_validator,
)

from spx.errors import ConfigError, short_repr
from spx.search.base import Goal
from spx.search.space import (
    Axis,
    Categorical,
    Condition,
    Conditions,
    FloatRange,
    IntRange,
    Space,
)
from spx.search.strategies import STRATEGIES
from spx.workers.tasks import task_class


def _method_schema(schema: dict[str, Any]) -> None:
    """``method`` in the JSON Schema: the registered strategies, each described."""
    schema["enum"] = sorted(STRATEGIES)
    lines = []
    for name in schema["enum"]:
        cls = STRATEGIES[name]
        traits = f" [{cls.traits()}]" if cls.traits() else ""
        lines.append(f"{name}: {cls.summary()}{traits}")
    schema["description"] = "The search strategy.\n" + "\n".join(lines)


class _Strict(BaseModel):
    # strict: `trials: yes` or `seed: true` is refused, not read as 1 (see workers/config.py)
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


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

    >>> from spx.platform.spec import parse_spec, resolve_trials
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
    method: str = Field("grid", json_schema_extra=_method_schema)
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
    _import_path: tuple[str, ...] = PrivateAttr(())

    @field_validator("name")
    @classmethod
    def _printable(cls, v: str) -> str:
        if not v.strip() or not v.isprintable() or "/" in v:
            raise ValueError("a sweep name must be printable text without '/'")
        return v

    @field_validator("task")
    @classmethod
    def _task(cls, v: str, info: ValidationInfo) -> str:
        try:
            task_class(v)
        except ConfigError as exc:
            top = v.partition(":")[0].split(".")[0]
            if ":" in v and _missing(top):
                folder = (info.context or {}).get("folder")
                where = f"the sweep file's folder ({folder}), " if folder else ""
                raise ValueError(
                    f"no module named {top!r}: spx imports a custom task from {where}"
                    "PYTHONPATH and the installed packages; put it there"
                ) from None
            raise ValueError(exc.reason) from None
        return v

    @field_validator("method")
    @classmethod
    def _method(cls, v: str) -> str:
        if v not in STRATEGIES:
            raise ValueError(f"unknown method {short_repr(v)}; choose one of {sorted(STRATEGIES)}")
        return v

    @property
    def import_path(self) -> tuple[str, ...]:
        """Folders a custom task is imported from beside PYTHONPATH: the sweep file's."""
        return self._import_path

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


def _missing(top: str) -> bool:
    """Whether no folder of the import path holds the top-level module ``top``."""
    try:
        return importlib.util.find_spec(top) is None
    except (ImportError, ValueError):  # an empty or malformed name: the task error says so
        return False
