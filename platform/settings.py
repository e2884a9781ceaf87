"""Where spx keeps things: SPX_HOME and the URLs of the store, MLflow and Ray.

Precedence for each URL: the CLI flag, then the environment variable, then the embedded
default under SPX_HOME (default ``./.spx``).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from spx.errors import ConfigError

_PASSWORD = re.compile(r"(?P<head>[a-zA-Z][a-zA-Z0-9+.-]*://[^:/@\s]+:)(?P<pw>[^@\s]+)(?=@)")


def mask_url(text: str) -> str:
    """Hide the password of every URL in ``text``.

    >>> mask_url("postgresql+psycopg://bob:secret@db:5432/x")
    'postgresql+psycopg://bob:***@db:5432/x'
    """
    return _PASSWORD.sub(lambda m: m.group("head") + "***", text)


@dataclass(frozen=True)
class Settings:
    home: Path
    store_url: str
    tracking_uri: str
    ray_address: str | None
    lost_after_s: float = 120.0
    """A RUNNING trial whose heartbeat is older than this is LOST (``SPX_LOST_AFTER_S``)."""

    @property
    def checkpoints(self) -> Path:
        return self.home / "checkpoints"

    @property
    def logs(self) -> Path:
        return self.home / "logs"

    @property
    def artifacts(self) -> Path:
        return self.home / "mlartifacts"


def resolve(
    store: str | None = None, tracking_uri: str | None = None, address: str | None = None
) -> Settings:
    """Resolve SPX_HOME and the three URLs from flags, environment and defaults."""
    home = Path(os.environ.get("SPX_HOME") or ".spx").expanduser().resolve()
    store_url = store or os.environ.get("SPX_STORE_URL") or f"sqlite:///{home / 'spx.db'}"
    tracking = (
        tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{home / 'mlflow.db'}"
    )
    ray_address = address or os.environ.get("RAY_ADDRESS") or None
    return Settings(home, store_url, tracking, ray_address, _lost_after())


def _lost_after() -> float:
    text = os.environ.get("SPX_LOST_AFTER_S") or "120"
    try:
        seconds = float(text)
    except ValueError:
        seconds = -1.0
    if not seconds > 0:
        raise ConfigError(
            "must be a number of seconds above 0", field="SPX_LOST_AFTER_S", value=text
        )
    return seconds


def ensure_home(settings: Settings) -> None:
    """Create SPX_HOME and its folders, or say clearly why it cannot be written."""
    try:
        for folder in (settings.home, settings.checkpoints, settings.logs, settings.artifacts):
            folder.mkdir(parents=True, exist_ok=True)
        probe = settings.home / ".write-probe"
        probe.write_text("ok")
        probe.unlink()
    except OSError as exc:
        raise ConfigError(
            f"cannot write to SPX_HOME ({exc.strerror})", field="SPX_HOME", value=str(settings.home)
        ) from exc
