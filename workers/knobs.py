"""What a sparsity method's configuration is made of, with no torch and no registry: the
strict base of every config section, the ``prune.*`` keys all methods share, the base of a
method's own knobs, and the error a cross-field check raises.

A method declares its own knobs as a :class:`MethodKnobs` model nested in its class
(``SNIP.Knobs``); the trial config (``config.py``) reads them from the registry, so a sweep
writes them flat under ``prune.`` (``prune.rounds``, ``prune.drop_fraction``), and a trial
of any method carries every knob at its value or default.

>>> class Knobs(MethodKnobs):
...     snip_step: int = Field(0, ge=0, description="the step whose batch scores the weights")
>>> Knobs(snip_step=3).snip_step
3
"""

from __future__ import annotations

from typing import Any, Literal, Protocol, TypeVar

from pydantic import BaseModel, ConfigDict, Field, model_validator


class FieldError(ValueError):
    """A cross-field check's failure that names the offending key: relative to its model
    inside a model validator, the full dotted key (``prune.rounds``) in a method's check."""

    def __init__(self, message: str, field: str, value: Any = ...):
        super().__init__(message)
        self.field, self.value = field, value


class Node(BaseModel):
    # strict: a boolean or a text is no number (YAML's `true` would train 1 step), a number
    # is no text; an int is still a valid float.
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class ScheduleConfig(Node):
    kind: Literal["cubic", "one-shot", "constant"] = "cubic"
    start: float = Field(0.0, ge=0, le=1, description="fraction of train.steps")
    end: float = Field(0.75, ge=0, le=1, description="fraction of train.steps")
    every: int = Field(10, ge=1, description="steps between mask updates")

    @model_validator(mode="after")
    def _ordered(self) -> ScheduleConfig:
        if self.start > self.end:
            raise ValueError(f"start must not exceed end (got start={self.start}, end={self.end})")
        return self


class PruneSettings(Node):
    """The ``prune.*`` keys every method shares; a trial's ``PruneConfig`` adds the
    registered methods' own knobs."""

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


class MethodKnobs(Node):
    """A method's own ``prune.*`` keys: subclass it as ``Knobs`` inside the method's class.
    Every field has a default and a description; a knob two methods share is declared once
    (in a common base class, as rigl and set do). Checks that involve other keys go in the
    method's ``check``, so they bind only trials of that method."""


class TrainView(Protocol):
    @property
    def steps(self) -> int: ...

    @property
    def seed(self) -> int: ...


class TrialView(Protocol):
    """What a method's checks read of a trial config (``TrialConfig`` is one)."""

    @property
    def prune(self) -> PruneSettings: ...

    @property
    def train(self) -> TrainView: ...


K = TypeVar("K", bound=MethodKnobs)


def read_knobs(model: type[K], prune: PruneSettings) -> K:
    """A method's knobs as a trial's ``prune`` config holds them (defaults for those it
    lacks: a bare PruneSettings holds none)."""
    fields = model.model_fields
    return model.model_validate({k: getattr(prune, k) for k in fields if hasattr(prune, k)})


def before_end(key: str, step: int, steps: int) -> None:
    """Raise FieldError unless ``step`` (the value of ``key``) comes before the end of
    training."""
    if step >= steps:
        raise FieldError(
            f"{key} must come before the end of training (train.steps = {steps})", key, step
        )
