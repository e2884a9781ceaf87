"""One exception hierarchy for spx. The CLI maps each class to an exit code."""

from __future__ import annotations

from typing import Any


class SpxError(Exception):
    """Base class of every error spx raises on purpose."""

    exit_code = 1


class ConfigError(SpxError):
    """Bad input: a sweep file, a flag or a trial key. Exit code 2.

    ``field`` is the dotted path of the offending value (``parameters.train.lr.min``);
    the message always echoes the value so the user sees what was read.
    """

    exit_code = 2

    def __init__(self, message: str, field: str | None = None, value: Any = ...):
        self.field = field
        self.value = value
        self.reason = message
        """The message alone, without the field and the value (to re-raise elsewhere)."""
        parts = []
        if field:
            parts.append(f"{field}: ")
        parts.append(message)
        if value is not ...:
            parts.append(f" (got {value!r})")
        super().__init__("".join(parts))


class StoreError(SpxError):
    """The results store could not be opened, migrated or written."""


class NotFoundError(SpxError):
    """A named sweep, trial or column does not exist. Exit code 2 (bad input)."""

    exit_code = 2


class TrialError(SpxError):
    """A trial failed: it raised, or its loss went NaN."""


class TrialPruned(SpxError):
    """Early termination asked a trial to stop; not a failure. Carries where it stopped."""

    def __init__(self, step: int, metrics: dict[str, float]):
        super().__init__(f"stopped early at step {step}")
        self.step = step
        self.metrics = metrics


class SweepBusyError(SpxError):
    """A live driver may hold the sweep (or none does, where one is needed). Exit code 1."""


class TrackingError(SpxError):
    """MLflow could not be reached or refused a write where one was required (sync)."""


class ClusterError(SpxError):
    """Ray could not be reached or cannot place what the sweep asks for."""
