"""The trial config: one typed tree, built once from the sweep's dotted keys.

A sweep file speaks in dotted keys (``train.lr``, ``prune.schedule.start``); a trial sees
only :class:`TrialConfig`. ``TrialConfig.from_flat`` is the single place where dotted keys
become the tree, and where an unknown key becomes a :class:`~spx.errors.ConfigError` with a
did-you-mean. ``prune.*`` holds the keys every method shares plus each registered method's
own knobs (``methods.py``): the registry is read when a config is built, so a method
registered later brings its knobs along.

>>> cfg = TrialConfig.from_flat("digits-mlp", {"train.steps": 50, "prune.sparsity": 0.5})
>>> cfg.train.steps, cfg.prune.sparsity, cfg.prune.schedule.kind
(50, 0.5, 'cubic')
"""

from __future__ import annotations

import difflib
import functools
import importlib.util
from typing import Any, Literal

from pydantic import (
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from spx.errors import ConfigError
from spx.workers.knobs import FieldError, MethodKnobs, PruneSettings
from spx.workers.knobs import Node as _Node
from spx.workers.knobs import ScheduleConfig as ScheduleConfig  # a section of TrialConfig
from spx.workers.methods import METHODS, method_class
from spx.workers.warmstart import InitConfig

_TYPE_NAMES = {
    "int_type": "a whole number",
    "float_type": "a number",
    "string_type": "text (quote it if the number is meant as text)",
    "bool_type": "true or false",
}


def type_reason(err: Any) -> str | None:
    """A plain message for a pydantic type error (a wrong kind of value), else None.

    >>> type_reason({"type": "float_type", "input": True})
    'must be a number, not a boolean'
    """
    wanted = _TYPE_NAMES.get(err["type"])
    if wanted is None:
        return None
    got = err.get("input")
    kind = {bool: "a boolean", str: "text", int: "a whole number", float: "a fraction"}
    found = kind.get(type(got), type(got).__name__)
    if err["type"] == "int_type" and isinstance(got, float) and got == int(got):
        found = "a float (write it without the decimal point)"
    return f"must be {wanted}, not {found}"


class ModelConfig(_Node):
    width: int = Field(128, ge=1, le=65536, description="hidden width / embedding size")
    depth: int = Field(2, ge=1, le=256, description="hidden layers / transformer blocks")
    heads: int = Field(4, ge=1, le=256, description="attention heads (code-gpt)")
    context: int = Field(
        64, ge=2, le=8192, description="sequence length (code-gpt: bytes; hf-causal-lm: tokens)"
    )
    path: str | None = Field(
        None, min_length=1, description="hf-causal-lm: a local transformers model folder"
    )


class TrainConfig(_Node):
    steps: int = Field(
        300,
        ge=0,
        le=10_000_000,
        description="0: no training (post-training pruning without fine-tune, or none)",
    )
    batch_size: int = Field(64, ge=1, le=1_000_000)
    lr: float = Field(3e-3, gt=0, le=10)
    lr_schedule: Literal["constant", "cosine"] = Field(
        "constant", description="cosine: decay from train.lr to 0 over train.steps"
    )
    weight_decay: float = Field(0.0, ge=0, le=10)
    optimizer: Literal["adamw", "sgd"] = "adamw"
    momentum: float = Field(0.9, ge=0, lt=1, description="SGD momentum")
    seed: int = Field(0, ge=0, le=2**31 - 1)
    report_every: int = Field(25, ge=1, description="steps between metric reports")
    checkpoint_every: int | Literal["auto"] = Field(
        "auto",
        description="steps between checkpoints; auto: every 10 % of the trial's steps and "
        "at least every 5 minutes; 0: only at the end",
    )

    @field_validator("checkpoint_every", mode="before")
    @classmethod
    def _checkpoint_every(cls, every: Any) -> Any:
        whole = isinstance(every, int) and not isinstance(every, bool) and every >= 0
        if every == "auto" or whole:
            return every
        raise ValueError('must be "auto" or a whole number of steps >= 0')


def _knob_models() -> list[type[MethodKnobs]]:
    """Each registered method's knobs model once (rigl and set share one), in order."""
    models: list[type[MethodKnobs]] = []
    for cls in METHODS.values():
        if cls.Knobs not in models:
            models.append(cls.Knobs)
    return models


def _prune_schema(schema: dict[str, Any]) -> None:
    """``prune`` in the JSON Schema: each registered method with its own knobs under it,
    and every knob as a key, described with the methods that read it."""
    props = schema["properties"]
    lines = []
    for name in sorted(METHODS):
        cls = METHODS[name]
        knobs = ", ".join(f"prune.{k}" for k in cls.Knobs.model_fields)
        line = f"{name}: {cls.summary()} [{cls.traits()}]"
        lines.append(line + (f" knobs: {knobs}" if knobs else ""))
    props["method"]["enum"] = sorted(METHODS)
    props["method"]["description"] = "The sparsity method.\n" + "\n".join(lines)
    for model in _knob_models():
        owners = "/".join(n for n, c in METHODS.items() if c.Knobs is model)
        own = model.model_json_schema()
        for key, field in own["properties"].items():
            field = _inline(field, own.get("$defs", {}))  # a knob may be a section of its own
            props[key] = {**field, "description": f"{owners}: {field.get('description', '')}"}
    schema["additionalProperties"] = False


def _inline(schema: Any, defs: dict[str, Any]) -> Any:
    """``schema`` with every ``$ref`` into ``defs`` replaced by what it names."""
    if isinstance(schema, list):
        return [_inline(item, defs) for item in schema]
    if not isinstance(schema, dict):
        return schema
    if "$ref" in schema:
        named = defs[schema["$ref"].rsplit("/", 1)[-1]]
        return _inline({**named, **{k: v for k, v in schema.items() if k != "$ref"}}, defs)
    return {k: _inline(v, defs) for k, v in schema.items()}


class PruneConfig(PruneSettings):
    """``prune.*``: the keys every method shares, and each registered method's own knobs
    flat beside them (``prune.rounds``), every one at its value or default."""

    model_config = ConfigDict(extra="allow", json_schema_extra=_prune_schema)

    @field_validator("method")
    @classmethod
    def _known_method(cls, method: str) -> str:
        if method not in METHODS:
            raise ValueError(f"unknown prune.method; choose one of {sorted(METHODS)}")
        return method

    @model_validator(mode="before")
    @classmethod
    def _knobs(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        shared = {k: v for k, v in data.items() if k in PruneSettings.model_fields}
        given = {k: v for k, v in data.items() if k not in shared}
        knobs: dict[str, Any] = {}
        for model in _knob_models():
            try:
                own = model.model_validate(
                    {k: v for k, v in given.items() if k in model.model_fields}
                )
            except ValidationError as exc:
                err = exc.errors()[0]
                msg = type_reason(err) or err["msg"].removeprefix("Value error, ")
                key = ".".join(str(p) for p in err["loc"]) or "method"
                raise FieldError(msg, key, err.get("input", ...)) from None
            knobs.update(own.model_dump())
        unknown = sorted(given.keys() - knobs.keys())
        if unknown:
            raise FieldError("unknown prune.* key", unknown[0], given[unknown[0]])
        return {**shared, **knobs}


class CommConfig(_Node):
    """How the workers of a multi-worker trial synchronise (ALGORITHMS.md §1a-§1c).

    SparseLoCo applies ``outer_lr`` (α) inside the error-feedback accumulator and then takes
    an outer SGD step of lr 1, so α enters once (§1b, "α is applied twice"); DiLoCo uses it
    as the Nesterov SGD lr.
    """

    strategy: Literal["ddp", "diloco", "sparseloco"] = "ddp"
    inner_steps: int = Field(15, ge=1, description="H: local steps between outer steps")
    topk: int = Field(64, ge=1, description="sparseloco: kept values per chunk x chunk block")
    chunk: int = Field(64, ge=1, description="sparseloco: target chunk side")
    bits: Literal[2, 4, 8] = Field(2, description="sparseloco: bits per quantized value")
    ef_decay: float = Field(0.95, ge=0, le=1, description="sparseloco: error-feedback decay β")
    outer_lr: float | None = Field(
        None, gt=0, le=10, description="diloco: 0.7; sparseloco: 1.0 (α, inside the EF)"
    )
    outer_momentum: float | None = Field(
        None, ge=0, lt=1, description="diloco: 0.9 (Nesterov); sparseloco: 0 (ablation flag)"
    )
    sparse_agg: Literal["mean_contrib", "mean_all"] = Field(
        "mean_contrib", description="sparseloco: mean over contributors or over all R"
    )
    timeout_s: float = Field(300.0, gt=0, description="collective timeout: a lost worker fails")

    @field_validator("bits", mode="before")
    @classmethod
    def _bits(cls, bits: Any) -> Any:
        if type(bits) is not int or bits not in (2, 4, 8):  # 4.0 and True are no bit widths
            raise ValueError("must be one of 2, 4, 8")
        return bits

    @model_validator(mode="after")
    def _topk_fits(self) -> CommConfig:
        if self.topk > self.chunk * self.chunk:
            raise FieldError(
                f"comm.topk must not exceed comm.chunk**2 = {self.chunk**2}",
                "topk",
                self.topk,
            )
        return self

    @property
    def lr(self) -> float:
        """The outer lr in effect: explicit, else the strategy's default (§1c)."""
        if self.outer_lr is not None:
            return self.outer_lr
        return 0.7 if self.strategy == "diloco" else 1.0

    @property
    def momentum(self) -> float:
        """The outer momentum in effect: DiLoCo's Nesterov 0.9, none for SparseLoCo (§1c)."""
        if self.outer_momentum is not None:
            return self.outer_momentum
        return 0.9 if self.strategy == "diloco" else 0.0


class DeepSpeedConfig(_Node):
    """DeepSpeed's engine for the inner steps (``engine: deepspeed``; ``engine.py``)."""

    zero_stage: int = Field(
        0,
        ge=0,
        le=2,
        description="ZeRO stage: 0 none, 1 partitions optimizer state, 2 also gradients",
    )


DARTS_OPS = ("none", "skip", "max-pool", "avg-pool", "sep-conv-3", "dil-conv-3")
SPARSE_OPS = ("sparse-conv-3", "sparse-conv-5")


class NasConfig(_Node):
    """Architecture search inside one trial (ALGORITHMS.md §2, §3); ``none`` trains the
    task's model as it is. ``random-nas`` scores ``candidates`` random node masks at
    ``prune.sparsity`` for ``budget`` x train.steps on a held-out half of the train split,
    then trains the best through the normal loop. ``dass`` searches a DARTS supernet whose
    ops include sparse ones with masks on during search; ``darts`` is the same with masks
    off (search dense, prune later); both then retrain the derived net at prune.sparsity."""

    method: Literal["none", "random-nas", "dass", "darts"] = "none"
    candidates: int = Field(20, ge=1, le=10_000, description="random-nas: K masks scored")
    budget: float = Field(
        0.05, gt=0, le=1, description="random-nas: scoring steps per mask, of train.steps"
    )
    search_steps: int = Field(300, ge=1, le=10_000_000, description="dass/darts: search steps")
    cells: int = Field(2, ge=1, le=64, description="dass/darts: cells in the supernet")
    nodes: int = Field(3, ge=2, le=16, description="dass/darts: intermediate nodes per cell")
    channels: int = Field(8, ge=1, le=4096, description="dass/darts: supernet channels")
    ops: tuple[str, ...] = Field(
        DARTS_OPS + SPARSE_OPS,
        description="dass/darts: candidate ops on every edge",
        strict=False,  # a YAML list is a fine tuple; its items are still checked as text
    )
    score: Literal["magnitude", "learned"] = Field(
        "magnitude", description="dass: sparse-op mask scores, |w| or learned (straight-through)"
    )
    arch_lr: float = Field(3e-4, gt=0, le=10, description="dass/darts: Adam lr of alpha")
    arch_weight_decay: float = Field(1e-3, ge=0, le=10, description="dass/darts: alpha decay")

    @field_validator("ops")
    @classmethod
    def _known_ops(cls, ops: tuple[str, ...]) -> tuple[str, ...]:
        unknown = [op for op in ops if op not in DARTS_OPS + SPARSE_OPS]
        if unknown:
            raise ValueError(
                f"unknown op {unknown[0]!r}; choose from {list(DARTS_OPS + SPARSE_OPS)}"
            )
        if not ops:
            raise ValueError("give at least one candidate op")
        return ops


class TrialConfig(_Node):
    task: str
    engine: Literal["torch", "deepspeed"] = "torch"
    model: ModelConfig = ModelConfig()
    train: TrainConfig = TrainConfig()
    prune: PruneConfig = Field(default_factory=PruneConfig)  # the knobs registered by then
    comm: CommConfig = CommConfig()
    deepspeed: DeepSpeedConfig = DeepSpeedConfig()
    nas: NasConfig = NasConfig()
    init: InitConfig = InitConfig()  # init.from: trained weights to start from

    @model_validator(mode="after")
    def _method_fits(self) -> TrialConfig:
        method = method_class(self.prune.method)
        if self.train.steps == 0 and method.prunes and not method.calibrates:
            raise FieldError(
                f"must be >= 1 for prune.method {method.name}, which prunes while it trains "
                "(0 steps: a post-training method without fine-tune, or none to evaluate "
                "the starting weights)",
                "train.steps",
                0,
            )
        method.check(self)  # its cross-field rules (FieldError)
        return self

    @model_validator(mode="after")
    def _engine_fits(self) -> TrialConfig:
        check_engine(self)
        return self

    @classmethod
    def from_flat(cls, task: str, flat: dict[str, Any], where: str = "") -> TrialConfig:
        """Build a config from dotted keys; errors name ``where`` + the dotted key."""
        nested: dict[str, Any] = {"task": task}
        for key, value in expand_keys(flat).items():
            _check_key(key, where)
            _insert(nested, key.split("."), value, where)
        try:
            return cls.model_validate(nested)
        except ValidationError as exc:
            raise _to_config_error(exc, where) from None

    def flat(self) -> dict[str, Any]:
        """The config as dotted keys, for MLflow params and SQL columns."""
        return flatten(self.model_dump(exclude={"task"}))


def deepspeed_installed() -> bool:
    """Whether deepspeed (the ``deepspeed`` extra) is there, without importing it (slow)."""
    return importlib.util.find_spec("deepspeed") is not None


def check_engine(cfg: TrialConfig) -> None:
    """Raise FieldError for an engine setting the trial cannot run (engine.py says why)."""
    ds = cfg.deepspeed
    if cfg.engine == "torch":
        if ds.zero_stage:
            raise FieldError(
                "deepspeed.* keys need engine: deepspeed", "deepspeed.zero_stage", ds.zero_stage
            )
        return
    if not deepspeed_installed():
        raise FieldError(
            "engine deepspeed needs DeepSpeed installed (pip install 'spx[deepspeed]')",
            "engine",
            cfg.engine,
        )
    if cfg.comm.strategy != "ddp":
        raise FieldError(
            f"engine deepspeed averages gradients every step, so it runs comm.strategy ddp "
            f"only, not {cfg.comm.strategy}",
            "engine",
            cfg.engine,
        )
    method = method_class(cfg.prune.method)
    if ds.zero_stage not in method.zero_stages:
        raise FieldError(
            f"prune.method {cfg.prune.method} reads or writes gradients or optimizer state "
            f"itself, which ZeRO partitions; run it at deepspeed.zero_stage 0",
            "deepspeed.zero_stage",
            ds.zero_stage,
        )


def flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten(value, name + "."))
        else:
            out[name] = value
    return out


def expand_keys(flat: dict[str, Any]) -> dict[str, Any]:
    """A mapping value sets several keys at once: ``model: {width: 64}`` is ``model.width``.

    Under a name that is no key prefix (a *variant*, e.g. ``variant: {nas.method: dass,
    prune.sparsity: 0.9}``) a mapping of full dotted keys sets keys across prefixes, so one
    grid axis can compare pipelines that differ in several places.
    """
    out: dict[str, Any] = {}
    for key, value in flat.items():
        if isinstance(value, dict) and value:
            if _is_variant(key, value):
                out.update(expand_keys(value))
            else:
                out.update(expand_keys({f"{key}.{k}": v for k, v in value.items()}))
        else:
            out[key] = value
    return out


def _is_variant(name: str, value: dict[str, Any]) -> bool:
    prefixes = _prefixes()
    if name in prefixes or name in known_keys():
        return False
    return all(str(k) in prefixes or str(k) in known_keys() for k in value)


def _prefixes() -> set[str]:
    out: set[str] = set()
    for key in known_keys():
        parts = key.split(".")
        out.update(".".join(parts[:i]) for i in range(1, len(parts)))
    return out


def known_keys() -> list[str]:
    """Every dotted trial key a sweep may set (the registered methods' knobs included)."""
    return _known_keys(tuple(METHODS.items()))


@functools.cache
def _known_keys(registry: tuple[tuple[str, type], ...]) -> list[str]:
    keys = sorted(flatten(TrialConfig(task="_").model_dump(exclude={"task"})))
    return ["engine"] + [k for k in keys if k != "engine"]


def _check_key(key: str, where: str) -> None:
    keys = known_keys()
    if key in keys:
        return
    hint = difflib.get_close_matches(key, keys, n=1)
    msg = f"unknown trial key; did you mean {hint[0]!r}?" if hint else "unknown trial key"
    if not hint:
        msg += f" (known keys: {', '.join(keys)})"
    raise ConfigError(msg, field=f"{where}{key}" if where else key)


def _insert(tree: dict[str, Any], parts: list[str], value: Any, where: str) -> None:
    node = tree
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = value


def _to_config_error(exc: ValidationError, where: str) -> ConfigError:
    err = exc.errors()[0]
    parts = [str(p) for p in err["loc"] if p != "task"]
    msg = type_reason(err) or err["msg"].removeprefix("Value error, ")
    value = err.get("input", ...)
    cause = err.get("ctx", {}).get("error")
    if isinstance(cause, FieldError):  # a cross-field check names its own key and value
        parts, value = parts + [cause.field], cause.value
    loc = ".".join(parts)
    field = f"{where}{loc}" if loc else where.rstrip(".") or None
    if isinstance(value, dict):  # a model-level check: the message already shows the values
        value = ...
    return ConfigError(msg, field=field, value=value)
