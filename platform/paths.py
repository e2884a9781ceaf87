"""Every file and folder name spx derives from a sweep or a trial, and how an output is written.

A sweep name is free text (up to 200 characters, no ``/``), so its name on disk is
:func:`file_name`: a readable ASCII slug plus 8 hex digits of the SHA-256 of the exact name.
Two names never share a file (``a;b`` and ``a|b`` differ in their hash), every name gets
one (an all-emoji name is ``sweep-<hash>``), and none hides or climbs (``..`` is
``sweep-<hash>``, ``.x`` is ``x-<hash>``).

Files written before this naming used the bare slug (``re.sub(r"[^A-Za-z0-9_.-]+", "_")``,
60 characters): ``checkpoints/<id>-<slug>/``, ``logs/<slug>.log``, ``run/<slug>.json``.
Readers fall back to those where only the old one exists (:func:`sweep_folder`,
:func:`find_log`, :func:`find_driver_file`), so an old sweep resumes from its checkpoints
and shows its log; new files always get the new name. Reports are rewritten after each
launch and read by nobody, so they need no fallback.

>>> file_name("quickstart")
'quickstart-ed4f0b24'
>>> file_name("a;b") != file_name("a|b")
True
>>> file_name("..")
'sweep-5ec1f7e7'
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import re
import secrets
import unicodedata
from pathlib import Path
from typing import TYPE_CHECKING

from spx.errors import ConfigError, SpxError

if TYPE_CHECKING:
    from spx.platform.settings import Settings
    from spx.platform.store import SweepRow

SLUG_MAX = 40
"""Readable characters kept from a name; the hash keeps longer names apart."""
HASH_HEX = 8
_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")


def file_name(name: str) -> str:
    """The file-safe form of a sweep name: ASCII slug, ``-``, 8 hex of its SHA-256.

    Never empty, never starting with ``.`` or ``-``, at most 49 characters.
    """
    ascii_text = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    slug = _UNSAFE.sub("_", ascii_text).strip("._-")[:SLUG_MAX].rstrip("._-") or "sweep"
    digest = hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()[:HASH_HEX]
    return f"{slug}-{digest}"


def legacy_name(name: str) -> str:
    """The name earlier versions of spx gave a sweep's log, pid file and checkpoints."""
    return _UNSAFE.sub("_", name)[:60] or "sweep"


def _existing(new: Path, old: Path) -> Path:
    """``old`` where only it exists (a file written before the naming changed), else ``new``."""
    return old if not new.exists() and old.exists() else new


def log_file(settings: Settings, name: str) -> Path:
    """Where ``launch --detach`` sends the driver's output."""
    return settings.logs / f"{file_name(name)}.log"


def find_log(settings: Settings, name: str) -> Path:
    """The driver's log to read: :func:`log_file`, or the old name where only it exists."""
    return _existing(log_file(settings, name), settings.logs / f"{legacy_name(name)}.log")


def driver_file(settings: Settings, name: str) -> Path:
    """The pid file of the driver of sweep ``name``."""
    return settings.home / "run" / f"{file_name(name)}.json"


def find_driver_file(settings: Settings, name: str) -> Path:
    """The pid file to read: :func:`driver_file`, or the old name where only it exists
    (a driver started by an earlier version)."""
    old = settings.home / "run" / f"{legacy_name(name)}.json"
    return _existing(driver_file(settings, name), old)


def report_file(settings: Settings, name: str) -> Path:
    """The HTML report written after each launch."""
    return settings.home / "reports" / f"{file_name(name)}.html"


def report_plots(settings: Settings, name: str) -> Path:
    """The folder of the report's PNG plots."""
    return settings.home / "reports" / file_name(name)


def sweep_folder(settings: Settings, sweep: SweepRow) -> Path:
    """The sweep's checkpoint folder, ``checkpoints/<id>-<file name>``; a sweep whose
    folder has the old name (and no new one) keeps it, so it resumes from its checkpoints."""
    new = settings.checkpoints / f"{sweep.id}-{file_name(sweep.name)}"
    old = settings.checkpoints / f"{sweep.id}-{legacy_name(sweep.name)}"
    return old if not new.exists() and old.is_dir() else new


def trial_folder(sweep_dir: Path, number: int) -> Path:
    """Trial ``number``'s folder (checkpoint, journal, pid files) in its sweep's folder."""
    return sweep_dir / f"trial-{number:05d}"


def artifact_folder(root: Path, name: str) -> Path:
    """The artifact location of a sweep's MLflow experiment under ``root``."""
    return root / file_name(name)


# -- writing an output ------------------------------------------------------------------


def check_output(path: Path, force: bool = False, field: str = "--output") -> None:
    """Refuse (ConfigError, exit 2) an output path that cannot or must not be written: a
    folder, a missing or non-folder parent, or an existing file without ``force``.
    Call it before expensive work; :func:`write_output` checks again."""
    path = Path(path)
    if path.is_dir():
        raise ConfigError("is a folder; name a file to write", field=field, value=str(path))
    parent = path.parent
    if not parent.is_dir():
        what = "is not a folder" if parent.exists() else "does not exist"
        raise ConfigError(
            f"the folder to write into {what}: {parent}", field=field, value=str(path)
        )
    if os.path.lexists(path) and not force:
        raise ConfigError("exists; pass --force to overwrite it", field=field, value=str(path))


def write_output(
    path: Path, data: str | bytes, force: bool = False, field: str = "--output"
) -> Path:
    """Write ``data`` to ``path`` atomically: into a temporary file created exclusively
    (``O_CREAT | O_EXCL``, a random name) in the same folder, then renamed over ``path``.

    A symlink planted anywhere is never followed: ``O_EXCL`` refuses an existing name and
    the rename replaces a link at ``path`` rather than its target. Bad paths are a
    ConfigError naming ``field``; on any failure the temporary file is removed.
    """
    path = Path(path)
    check_output(path, force, field)
    raw = data.encode("utf-8") if isinstance(data, str) else data
    tmp, fd = _create_temp(path, field)
    try:
        with os.fdopen(fd, "wb") as sink:
            sink.write(raw)
            sink.flush()
            os.fsync(sink.fileno())
        if not force:
            check_output(path, force, field)  # it may have appeared while we wrote
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(exc, OSError):
            raise SpxError(f"cannot write {path} ({exc.strerror or exc})") from exc
        raise
    return path


def _create_temp(path: Path, field: str) -> tuple[str, int]:
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    for _ in range(100):
        tmp = str(path.with_name(f".{path.name}.{secrets.token_hex(4)}.part"))
        try:
            return tmp, os.open(tmp, flags, 0o666)  # the umask applies, as for any new file
        except FileExistsError:
            continue
        except OSError as exc:
            reason = exc.strerror or str(exc)
            if exc.errno in (errno.EACCES, errno.EROFS, errno.EPERM):
                raise ConfigError(
                    f"cannot write into {path.parent} ({reason})", field=field, value=str(path)
                ) from exc
            raise SpxError(f"cannot write {path} ({reason})") from exc
    raise SpxError(f"cannot create a temporary file beside {path}")
