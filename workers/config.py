"""The trial config: one typed tree, built once from the sweep's dotted keys.

A sweep file speaks in dotted keys (``train.lr``, ``prune.schedule.start``); a trial sees
only :class:`TrialConfig`. ``TrialConfig.from_flat`` is the single place where dotted keys
become the tree, and where an unknown key becomes a :class:`~spx.errors.ConfigError` with a
did-you-mean.

>>> cfg = TrialConfig.from_flat("digits-mlp", {"train.steps": 50, "prune.sparsity": 0.5})
>>> cfg.train.steps, cfg.prune.sparsity, cfg.prune.schedule.kind
(50, 0.5, 'cubic')
"""

from __future__ import annotations

import difflib
import functools
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from spx.errors import ConfigError
from spx.kernels.nm import parse_nm


class FieldError(ValueError):
    """A cross-field check's failure that names the offending key (relative to its model)."""

    def __init__(self, message: str, field: str, value: Any = ...):
        super().__init__(message)
        self.field, self.value = field, value


class _Node(BaseModel):
    # strict: a boolean or a text is no number (YAML's `true` would train 1 step), a number
    # is no text; an int is still a valid float.
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


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
    steps: int = Field(300, ge=1, le=10_000_000)
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


class ScheduleConfig(_Node):
    kind: Literal["cubic", "one-shot", "constant"] = "cubic"
    start: float = Field(0.0, ge=0, le=1, description="fraction of train.steps")
    end: float = Field(0.75, ge=0, le=1, description="fraction of train.steps")
    every: int = Field(10, ge=1, description="steps between mask updates")

    @model_validator(mode="after")
    def _ordered(self) -> ScheduleConfig:
        if self.start > self.end:
            raise ValueError(f"start must not exceed end (got start={self.start}, end={self.end})")
        return self


class PruneConfig(_Node):
    method: str = "none"
    sparsity: float = Field(0.0, ge=0, lt=1, description="target fraction of zeros")
    schedule: ScheduleConfig = ScheduleConfig()
    embeddings: bool = Field(False, description="also prune embedding tables")
    distribution: Literal["uniform", "er", "erk"] = Field(
        "uniform", description="layer densities: magnitude, random, rigl, set, channel"
    )
    min_layer_fraction: float = Field(
        0.0005, ge=0, lt=1, description="global methods: least share of all weights a layer keeps"
    )
    rounds: int = Field(0, ge=0, le=100, description="lottery: 0 means as many as needed")
    rewind_step: int = Field(0, ge=0, description="lottery: the step k rounds rewind to")
    rate: float = Field(0.2, gt=0, lt=1, description="lottery: share of remaining pruned a round")
    nm: str = Field("2:4", description="nm: keep N of every M weights along the input dim")
    srste_decay: float = Field(2e-4, ge=0, le=1, description="nm: SR-STE decay on pruned weights")
    update_every: int = Field(100, ge=1, description="rigl/set: steps between mask updates")
    drop_fraction: float = Field(0.3, ge=0, le=1, description="rigl/set: initial drop fraction")
    update_end: float = Field(0.75, ge=0, le=1, description="rigl/set: last update, of train.steps")
    mask_seed: int | None = Field(
        None, ge=0, le=2**63 - 1, description="nodes: node-mask seed; unset: from train.seed"
    )
    oto_lambda: float | None = Field(
        None, gt=0, le=100, description="oto: group-lasso λ; unset: 1e-2 (adamw), 1e-3 (sgd)"
    )
    oto_start: float = Field(
        0.1, ge=0, lt=1, description="oto: G_p partition and penalty start, of train.steps"
    )
    oto_project: float = Field(
        0.2, ge=0, lt=1, description="oto: half-space projection start, of train.steps"
    )
    oto_end: float = Field(
        0.75, gt=0, le=1, description="oto: target enforced by then (least-norm), of train.steps"
    )
    oto_epsilon: float = Field(
        0.0, ge=0, lt=1, description="oto: half-space ε: zero g if <x̂_g, x_g> < ε·|x_g|²"
    )

    @field_validator("method")
    @classmethod
    def _known_method(cls, method: str) -> str:
        from spx.workers.methods import METHODS  # late: methods import this module's types

        if method not in METHODS:
            raise ValueError(f"unknown prune.method; choose one of {sorted(METHODS)}")
        return method

    @field_validator("nm")
    @classmethod
    def _parses(cls, nm: str) -> str:
        try:
            parse_nm(nm)
        except ConfigError as exc:
            raise ValueError(exc.reason) from None
        return nm

    @model_validator(mode="after")
    def _consistent(self) -> PruneConfig:
        if self.method == "nm":
            n, m = parse_nm(self.nm)
            if self.sparsity not in (0.0, 1 - n / m):
                raise FieldError(
                    f"nm sets its own sparsity (1 - N/M = {1 - n / m:g} for {self.nm}); "
                    "leave prune.sparsity at 0",
                    "sparsity",
                    self.sparsity,
                )
        if self.method == "oto" and not self.oto_start <= self.oto_project <= self.oto_end:
            raise FieldError(
                f"oto needs prune.oto_start <= prune.oto_project <= prune.oto_end (got "
                f"{self.oto_start:g}, {self.oto_project:g}, {self.oto_end:g})",
                "oto_project",
                self.oto_project,
            )
        if self.method == "lottery" and self.rounds > 1 and self.sparsity > 0:
            reached = 1 - (1 - self.rate) ** (self.rounds - 1)
            if reached >= self.sparsity:
                raise FieldError(
                    f"{self.rounds} rounds at prune.rate {self.rate:g} pass prune.sparsity "
                    f"{self.sparsity:g} before the last round; lower prune.rounds or set it to 0",
                    "rounds",
                    self.rounds,
                )
        return self


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
    prune: PruneConfig = PruneConfig()
    comm: CommConfig = CommConfig()
    deepspeed: DeepSpeedConfig = DeepSpeedConfig()
    nas: NasConfig = NasConfig()

    @model_validator(mode="after")
    def _rewind_in_range(self) -> TrialConfig:
        p = self.prune
        if p.method == "lottery" and p.rewind_step >= self.train.steps:
            raise FieldError(
                f"prune.rewind_step must come before the end of training "
                f"(train.steps = {self.train.steps})",
                "prune.rewind_step",
                p.rewind_step,
            )
        return self

    @model_validator(mode="after")
    def _engine_fits(self) -> TrialConfig:
        from spx.workers.engine import check  # late: the engine imports this module's types

        check(self)
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


@functools.cache
def known_keys() -> list[str]:
    """Every dotted trial key a sweep may set."""
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
