"""Where spx keeps things: SPX_HOME and the URLs of the store, MLflow and Ray.

Precedence for each URL: the CLI flag, then the environment variable, then the embedded
default under SPX_HOME (default ``./.spx``).
"""

from __future__ import annotations

import functools
import os
import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, quote_plus, unquote, unquote_plus

from spx.errors import ConfigError

# A URL's userinfo starts after ``scheme://user:`` (the user may be empty); where the
# password ends is decided in ``_userinfo_spans``.
_USERINFO = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s:/@?#]*:")
# ``password=`` and its kin in a query string or a libpq keyword/value DSN, also with the
# ``=`` percent-encoded (an encoded value then ends at an encoded space or ``&``).
_KEY_VALUE = re.compile(
    r"(?i)(?:(?<=[^A-Za-z0-9_])|(?<=%[0-9A-F]{2})|^)(?:password|passwd|pwd|pass)"
    r"(?:\s*=\s*(?P<plain>'(?:[^'\\]|\\.)*'?|\"(?:[^\"\\]|\\.)*\"?|[^&\s]+)"
    r"|%3D(?P<coded>(?:(?!%2[06])[^&\s])+))"
)
_PORT = re.compile(r"\d*(?:[/?#]\S*)?")  # what follows host: when there is no userinfo
# The URLs spx is handed through the environment: their passwords are masked wherever they
# appear, in whatever form, even where no URL shape is left around them.
URL_ENV = ("SPX_STORE_URL", "MLFLOW_TRACKING_URI", "RAY_ADDRESS")
_MIN_LITERAL = 4  # shorter known passwords are masked only where they sit in a URL


def mask_url(text: str) -> str:
    """Hide every password in ``text``: URL userinfo, ``password=`` query and DSN values,
    and, anywhere, the passwords of the URLs in spx's environment variables (``URL_ENV``).

    >>> mask_url("postgresql+psycopg://bob:secret@db:5432/x")
    'postgresql+psycopg://bob:***@db:5432/x'
    >>> mask_url("postgresql://db/x?user=bob&password=secret and host=db password='a b'")
    'postgresql://db/x?user=bob&password=*** and host=db password=***'
    """
    for secret in _env_secrets(tuple(os.environ.get(name) or "" for name in URL_ENV)):
        text = text.replace(secret, "***")
    return _replace(text, _secret_spans(text, whole=False))


def has_secret(url: str) -> bool:
    """Whether the URL ``url`` carries a password (in its userinfo or its query)."""
    return bool(_secret_spans(url, whole=True))


def encode_userinfo(url: str) -> str:
    """``url`` with any raw ``@`` of its password percent-encoded: the host starts after
    the last ``@``, as browsers read it (SQLAlchemy would split at the first one).

    >>> encode_userinfo("postgresql://bob:p@ss@db/x")
    'postgresql://bob:p%40ss@db/x'
    """
    for start, end in _userinfo_spans(url, whole=True):
        return url[:start] + url[start:end].replace("@", "%40") + url[end:]
    return url


def _secret_spans(text: str, whole: bool) -> list[tuple[int, int]]:
    spans = list(_userinfo_spans(text, whole))
    for m in _KEY_VALUE.finditer(text):
        group = "plain" if m.group("plain") is not None else "coded"
        spans.append(m.span(group))
    return sorted(spans)


def _userinfo_spans(text: str, whole: bool):
    """(start, end) of each URL password in ``text``. It ends at the last ``@`` of its
    token (not counting the query); a token without one may be a password with spaces,
    which then runs on to the next ``@`` of the line. ``whole``: ``text`` is one URL."""
    for m in _USERINFO.finditer(text):
        start = m.end()
        line_end = _find(text, "\n", start)
        token_end = line_end if whole else _token_end(text, start, line_end)
        at = _last_at(text, start, token_end)
        if at < 0:
            nxt = text.find("@", start, line_end)
            if nxt < 0 or "://" in text[start:nxt] or _PORT.fullmatch(text, start, token_end):
                continue  # host:port, no password
            at = _last_at(text, nxt, line_end if whole else _token_end(text, nxt, line_end))
        yield start, at


def _last_at(text: str, start: int, end: int) -> int:
    """The last ``@`` in text[start:end] before the query (a ``?`` after the first ``@``)."""
    first = text.find("@", start, end)
    if first < 0:
        return -1
    return text.rfind("@", start, _find(text, "?", first, end))


def _token_end(text: str, start: int, end: int) -> int:
    space = re.compile(r"\s").search(text, start, end)
    return space.start() if space else end


def _find(text: str, what: str, start: int, end: int | None = None) -> int:
    end = len(text) if end is None else end
    found = text.find(what, start, end)
    return end if found < 0 else found


def _replace(text: str, spans: list[tuple[int, int]]) -> str:
    parts, last = [], 0
    for start, end in spans:
        if end <= last:
            continue
        parts += [text[last : max(start, last)], "***"]
        last = end
    return "".join(parts) + text[last:]


@functools.lru_cache(maxsize=8)
def _env_secrets(urls: tuple[str, ...]) -> tuple[str, ...]:
    """The passwords in ``urls``, as written, decoded and encoded, longest first."""
    found: set[str] = set()
    for url in urls:
        for start, end in _secret_spans(url, whole=True):
            raw = url[start:end].strip("'\"")
            plain = unquote(raw)
            for form in (raw, plain, unquote_plus(raw), quote(plain, safe=""), quote_plus(plain)):
                if len(form) >= _MIN_LITERAL:
                    found.add(form)
    return tuple(sorted(found, key=len, reverse=True))


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
    store_url, tracking = encode_userinfo(store_url), encode_userinfo(tracking)
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
