"""Shapes of the results store: its tables (ORM), the row types it hands out, statuses.

The schema itself is owned by the Alembic migrations in ``migrations/versions``; these
classes mirror it for queries. Change both together (a new ``000N_*.py`` plus the class here).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    JSON,
    DateTime,
    Double,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from spx.errors import ConfigError

# Named constraints, so later migrations (SQLite batch mode included) can refer to them.
NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """An aware UTC datetime in and out, on SQLite too (which stores no zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime given to the store: {value!r}")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


class MetricValue(TypeDecorator[float]):
    """A double that reads back NULL as NaN: SQLite turns a bound NaN into NULL."""

    impl = Double()
    cache_ok = True

    def process_bind_param(self, value: float | None, dialect: Any) -> float | None:
        return None if value is None else float(value)

    def process_result_value(self, value: float | None, dialect: Any) -> float:
        return math.nan if value is None else float(value)


def json_type() -> Any:
    return JSON(none_as_null=True).with_variant(JSONB(none_as_null=True), "postgresql")


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class Sweep(Base):
    __tablename__ = "sweeps"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(255), unique=True)
    task: Mapped[str] = mapped_column(String(255))
    method: Mapped[str] = mapped_column(String(64))
    spec_text: Mapped[str] = mapped_column(Text)
    spec_hash: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16))
    mlflow_experiment_id: Mapped[str | None] = mapped_column(String(64))
    mlflow_run_id: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    error: Mapped[str | None] = mapped_column(Text)  # 0003: why the driver failed it


class Trial(Base):
    __tablename__ = "trials"
    __table_args__ = (
        UniqueConstraint("sweep_id", "number"),
        Index("ix_trials_sweep_id_status", "sweep_id", "status"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    sweep_id: Mapped[int] = mapped_column(ForeignKey("sweeps.id", ondelete="CASCADE"))
    number: Mapped[int] = mapped_column(Integer)
    params: Mapped[dict[str, Any]] = mapped_column(json_type())
    # Promoted from params on insert so SQL can filter and group on them.
    prune_method: Mapped[str | None] = mapped_column(String(64))
    prune_sparsity: Mapped[float | None] = mapped_column(Double)
    model_width: Mapped[int | None] = mapped_column(Integer)
    model_depth: Mapped[int | None] = mapped_column(Integer)
    train_steps: Mapped[int | None] = mapped_column(Integer)
    train_lr: Mapped[float | None] = mapped_column(Double)
    train_seed: Mapped[int | None] = mapped_column(Integer)
    comm_strategy: Mapped[str | None] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16))
    attempt: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    error: Mapped[str | None] = mapped_column(Text)
    metrics: Mapped[dict[str, Any] | None] = mapped_column(json_type())
    step: Mapped[int | None] = mapped_column(Integer)
    mlflow_run_id: Mapped[str | None] = mapped_column(String(64))
    node_id: Mapped[str | None] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    heartbeat_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class Metric(Base):
    __tablename__ = "metrics"
    __table_args__ = (Index("ix_metrics_trial_id_name_step", "trial_id", "name", "step"),)

    trial_id: Mapped[int] = mapped_column(
        ForeignKey("trials.id", ondelete="CASCADE"), primary_key=True
    )
    step: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(128), primary_key=True)
    # Nullable only because SQLite stores NaN as NULL; MetricValue reads it back as NaN.
    value: Mapped[float] = mapped_column(MetricValue, nullable=True)


# Trial-config keys copied into their own columns: dotted key -> (column, Python type).
PROMOTED: dict[str, tuple[str, type]] = {
    "prune.method": ("prune_method", str),
    "prune.sparsity": ("prune_sparsity", float),
    "model.width": ("model_width", int),
    "model.depth": ("model_depth", int),
    "train.steps": ("train_steps", int),
    "train.lr": ("train_lr", float),
    "train.seed": ("train_seed", int),
    "comm.strategy": ("comm_strategy", str),
}


def promote(params: dict[str, Any]) -> dict[str, Any]:
    """The PROMOTED keys of a trial config as column values: ``{"model_width": 128}``."""
    out: dict[str, Any] = {}
    for key, (column, kind) in PROMOTED.items():
        value = params.get(key)
        if value is None:
            continue
        try:
            out[column] = kind(value)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"not a valid {kind.__name__}", field=key, value=value) from exc
    return out


def encode_metrics(metrics: dict[str, float]) -> dict[str, float | str]:
    """Final metrics as JSON-safe values; ``TrialRow.of`` reverses it."""
    # JSON has no NaN/Infinity (PostgreSQL's JSONB rejects them): keep those as strings,
    # which float() reads back ("nan", "inf", "-inf").
    return {
        name: float(v) if math.isfinite(float(v)) else str(float(v)) for name, v in metrics.items()
    }


# -- what the store hands out: frozen rows; ORM objects never leave a session ----------


class SweepStatus(StrEnum):
    PENDING = "PENDING"
    RUNNING = "RUNNING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    STOPPED = "STOPPED"
    STOPPING = "STOPPING"
    """`spx sweep stop` asked the driver to start no new trial (running ones finish)."""
    CANCELLING = "CANCELLING"
    """`spx sweep stop --cancel` asked the driver to stop its running trials too."""


class TrialStatus(StrEnum):
    PENDING = "PENDING"
    RUNNING = "RUNNING"
    COMPLETED = "COMPLETED"
    PRUNED = "PRUNED"
    FAILED = "FAILED"
    LOST = "LOST"


@dataclass(frozen=True)
class SweepRow:
    id: int
    name: str
    task: str
    method: str
    spec_text: str
    spec_hash: str
    status: SweepStatus
    mlflow_experiment_id: str | None
    mlflow_run_id: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    error: str | None = None
    """Why the sweep FAILED, when its driver could not finish it."""

    @classmethod
    def of(cls, sweep: Sweep) -> SweepRow:
        values = {f.name: getattr(sweep, f.name) for f in fields(cls)}
        return cls(**{**values, "status": SweepStatus(sweep.status)})


@dataclass(frozen=True)
class TrialRow:
    id: int
    sweep_id: int
    number: int
    params: dict[str, Any]
    status: TrialStatus
    attempt: int
    error: str | None
    metrics: dict[str, float] | None
    step: int | None
    mlflow_run_id: str | None
    node_id: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    heartbeat_at: datetime | None

    @classmethod
    def of(cls, trial: Trial) -> TrialRow:
        values = {f.name: getattr(trial, f.name) for f in fields(cls)}
        # Non-finite metrics are stored as strings ("nan", "inf"); float() reads both.
        metrics = None if trial.metrics is None else {k: float(v) for k, v in trial.metrics.items()}
        return cls(
            **{
                **values,
                "status": TrialStatus(trial.status),
                "params": dict(trial.params),
                "metrics": metrics,
            }
        )
