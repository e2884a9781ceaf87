"""Keeping passwords off command lines and out of what an ``spx`` process prints.

A URL given as ``--store``, ``--tracking-uri`` or ``--address`` sits on the process's
command line, which ``ps`` shows to every user of the machine and Ray records as the
driver's job entrypoint. :func:`exec_without_secrets` moves each such value that carries a
password into the environment variable spx reads anyway (``SPX_STORE_URL``,
``MLFLOW_TRACKING_URI``, ``RAY_ADDRESS``) and re-executes the same command without it,
before anything else runs: the password is on the command line for that first instant only.
:func:`mask_output` masks what logging and dying threads print.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
import traceback
from collections.abc import Callable, Collection

from spx.platform.settings import has_secret, mask_url

FLAG_ENV = {
    "--store": "SPX_STORE_URL",
    "--tracking-uri": "MLFLOW_TRACKING_URI",
    "--address": "RAY_ADDRESS",
}


def split_secrets(args: list[str], accepted: Collection[str]) -> tuple[list[str], dict[str, str]]:
    """``args`` without the URL flags (of ``accepted``) whose value has a password, and
    those values by environment variable. ``--flag value`` and ``--flag=value`` both count.

    >>> split_secrets(["ls", "--store=pg://u:pw@db/x", "--json"], {"--store"})
    (['ls', '--json'], {'SPX_STORE_URL': 'pg://u:pw@db/x'})
    """
    kept: list[str] = []
    moved: dict[str, str] = {}
    i = 0
    while i < len(args):
        flag, eq, value = args[i].partition("=")
        if args[i] == "--":  # the rest are arguments, whatever they look like
            return kept + args[i:], moved
        if flag in FLAG_ENV and flag in accepted and (eq or i + 1 < len(args)):
            value = value if eq else args[i + 1]
            if has_secret(value):
                moved[FLAG_ENV[flag]] = value
                i += 1 if eq else 2
                continue
        kept.append(args[i])
        i += 1
    return kept, moved


def exec_without_secrets(options_of: Callable[[list[str]], Collection[str]]) -> None:
    """Re-execute this process without the URL flags that carry a password (their values
    go into the environment); return when there are none. ``options_of(args)`` names the
    options the command of ``args`` takes: a flag it does not take stays, for click to refuse.
    """
    args = sys.argv[1:]
    if not any(a.partition("=")[0] in FLAG_ENV for a in args):
        return
    kept, moved = split_secrets(args, options_of(args))
    if not moved:
        return
    # The interpreter's own arguments (`python -m spx`, or the console script) stay as given.
    head = sys.orig_argv[: len(sys.orig_argv) - len(args)]
    sys.stdout.flush()
    os.execve(sys.executable, [*head, *kept], {**os.environ, **moved})


def mask_output() -> None:
    """Mask passwords in every log record of this process and in the traceback of a
    thread that dies (once per process: ``main`` may run several times in one)."""
    make_record = logging.getLogRecordFactory()
    if getattr(make_record, "masks_urls", False):
        return

    def masked_record(*args, **kwargs) -> logging.LogRecord:
        record = make_record(*args, **kwargs)
        try:
            record.msg, record.args = mask_url(record.getMessage()), ()
        except Exception:  # a malformed record: logging reports it as it would have
            return record
        if record.exc_info and record.exc_info[0] is not None:
            record.exc_text = masked_traceback(record.exc_info[1]).rstrip("\n")
        return record

    def masked_thread_error(hook: threading.ExceptHookArgs) -> None:
        name = hook.thread.name if hook.thread is not None else "?"
        sys.stderr.write(f"Exception in thread {name}:\n{masked_traceback(hook.exc_value)}")

    masked_record.masks_urls = True  # type: ignore[attr-defined]
    logging.setLogRecordFactory(masked_record)
    threading.excepthook = masked_thread_error


def masked_traceback(exc: BaseException | None) -> str:
    """The traceback of ``exc`` as Python prints it, every password masked."""
    if exc is None:
        return ""
    return mask_url("".join(traceback.format_exception(exc)))


def run_masked(cmd: list[str], env: dict[str, str]) -> int:
    """Run a server (``spx ui``'s) until it exits: the URLs in ``env`` reach it through its
    environment, never its command line, and its output is passed on with every password
    masked. Returns its exit code."""
    full = {**os.environ, **env, "PYTHONUNBUFFERED": "1"}
    with subprocess.Popen(
        cmd, env=full, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    ) as proc:
        assert proc.stdout is not None
        try:
            for line in proc.stdout:
                sys.stdout.write(mask_url(line))
                sys.stdout.flush()
        except BaseException:  # Ctrl-C (or a closed terminal): the server stops with us
            proc.terminate()
            raise
        return proc.wait()
