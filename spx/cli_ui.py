"""``spx ui``: the MLflow UI or optuna-dashboard on the backends spx writes to, each bound to
127.0.0.1 by default and given its URL through the environment, never its command line.

The server runs in a process group of its own, which ``spx ui`` takes down with it: on
Ctrl-C, SIGTERM or SIGHUP, and when the server's output ends, every process of the group (MLflow's
uvicorn workers among them) gets SIGTERM, then SIGKILL after ``STOP_GRACE_S``. A port that
is already taken is one line and exit 1, before anything starts.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Annotated

import typer

from spx.cli_options import Store_, Tracking
from spx.cli_output import PipeConsole
from spx.errors import ConfigError, NotFoundError, SpxError

out = PipeConsole(soft_wrap=True)
STOP_GRACE_S = 5.0
"""How long the server's processes get to exit after SIGTERM before they are killed."""
QUIET_MLFLOW = {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
"""MLflow's job runner (GenAI jobs: ten more processes at start) unless the user asks for
it: spx logs no such jobs, and on a small machine it doubles the time to the first page."""


def register(app: typer.Typer) -> None:
    app.command("ui")(ui)


def ui(
    which: Annotated[str, typer.Argument(help="mlflow or optuna")] = "mlflow",
    host: Annotated[str, typer.Option(help="bind address")] = "127.0.0.1",
    port: Annotated[int | None, typer.Option(help="port (mlflow 5000, optuna 8080)")] = None,
    workers: Annotated[
        int | None,
        typer.Option(help="MLflow's server processes (default 1: the first page comes soonest)"),
    ] = None,
    tracking_uri: Tracking = None,
    store: Store_ = None,
) -> None:
    """Serve the MLflow UI on the same backend spx writes to, or optuna-dashboard on the
    sweeps' Optuna studies (the tpe/cmaes/nsga2/qmc sweeps, live while they run)."""
    from spx.platform.settings import resolve

    if which not in ("mlflow", "optuna"):
        raise ConfigError("unknown UI; choose mlflow or optuna", field="which", value=which)
    port = (5000 if which == "mlflow" else 8080) if port is None else port
    if workers is not None and (which != "mlflow" or workers < 1):
        why = "optuna-dashboard runs one process" if which != "mlflow" else "must be 1 or more"
        raise ConfigError(why, field="--workers", value=workers)
    check_port(host, port)
    if which == "mlflow":
        from spx.platform.tracking import ui_command

        settings = resolve(tracking_uri=tracking_uri)
        cmd, env = ui_command(settings.tracking_uri, settings.artifacts, host, port)
        exe = shutil.which("mlflow") or str(Path(sys.executable).with_name("mlflow"))
        # One uvicorn worker: MLflow's default of 4 each import the whole server at once,
        # which on two cores triples the wait for the first page.
        cmd, what = [exe, *cmd[1:], "--workers", str(workers or 1)], "MLflow UI"
        env = {**{k: v for k, v in QUIET_MLFLOW.items() if k not in os.environ}, **env}
    else:
        from spx.dashboards.optuna_ui import STORAGE_ENV
        from spx.search.study_storage import study_storage_url

        settings = resolve(store)
        url = study_storage_url(settings.store_url)
        if url is None:
            raise ConfigError("an in-memory store keeps no studies", field="--store")
        _require_studies(url)
        # optuna-dashboard takes its storage on the command line only: our launcher reads
        # it from the environment instead
        cmd = [sys.executable, "-m", "spx.dashboards.optuna_ui", host, str(port)]
        env, what = {STORAGE_ENV: url}, "optuna-dashboard"
    out.print(f"{what} at http://{host}:{port}  (Ctrl-C to stop)", markup=False, highlight=False)
    raise typer.Exit(serve(cmd, env))


def _require_studies(url: str) -> None:
    """NotFoundError unless the SQLite file of the studies exists (the dashboard would
    die on it with a traceback); a server database is left to the dashboard."""
    from sqlalchemy.engine import make_url

    from spx.platform.settings import mask_url

    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite" and not Path(parsed.database or "").is_file():
        raise NotFoundError(
            f"no Optuna studies at {mask_url(url)}: a tpe, cmaes, nsga2 or qmc sweep creates them"
        )


def check_port(host: str, port: int) -> None:
    """Refuse a port outside 1-65535 (exit 2) or one something already listens on (exit 1).

    The probe binds as the servers do (SO_REUSEADDR), so a port that only has connections
    closing (TIME_WAIT) counts as free."""
    if isinstance(port, bool) or not 1 <= port <= 65535:
        raise ConfigError("a port is a number from 1 to 65535", field="--port", value=port)
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    except socket.gaierror as exc:
        reason = f"not an address to bind ({exc.strerror})"
        raise ConfigError(reason, field="--host", value=host) from None
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise SpxError(
                    f"port {port} on {host} is already in use (another `spx ui`?): "
                    "stop that one or choose another with --port"
                ) from None
            raise ConfigError(f"cannot bind ({exc.strerror})", field="--host", value=host) from None


def serve(cmd: list[str], env: dict[str, str]) -> int:
    """Run a server until it exits, in a process group of its own that ends with this
    process (see the module docstring). The URLs in ``env`` reach it through its
    environment, never its command line, and its output is passed on with every password
    masked. Returns its exit code (128 + the signal when SIGTERM or SIGHUP ended it)."""
    from spx.platform.settings import mask_url

    full = {**os.environ, **env, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        cmd,
        env=full,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # Ctrl-C reaches spx ui alone, which stops the group
    )
    # The group is no longer the terminal's: a closed terminal (SIGHUP) reaches us alone.
    before = {sig: signal.signal(sig, _terminated) for sig in ENDING}
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            sys.stdout.write(mask_url(line))
            sys.stdout.flush()
        return proc.wait()
    except _Terminated as ended:
        return 128 + ended.signum
    finally:
        # A second Ctrl-C or SIGTERM must not cut the clean-up short and leave orphans.
        interrupt = signal.signal(signal.SIGINT, signal.SIG_IGN)
        for sig in ENDING:
            signal.signal(sig, signal.SIG_IGN)
        try:
            stop_group(proc)
        finally:
            signal.signal(signal.SIGINT, interrupt)
            for sig, handler in before.items():
                signal.signal(sig, handler)


ENDING = (signal.SIGTERM, signal.SIGHUP)
"""The signals that end ``spx ui`` like Ctrl-C does (SIGINT is Python's KeyboardInterrupt)."""


class _Terminated(Exception):
    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


def _terminated(signum: int, frame: object) -> None:
    raise _Terminated(signum)


def stop_group(proc: subprocess.Popen) -> None:
    """SIGTERM to every process of ``proc``'s group and to each of its descendants (one
    may have left the group), SIGKILL to those alive after ``STOP_GRACE_S``."""
    import psutil

    family = _family(proc.pid)
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for process in family:
            with contextlib.suppress(psutil.NoSuchProcess):
                process.send_signal(sig)
        deadline = time.monotonic() + STOP_GRACE_S
        while family and time.monotonic() < deadline:
            proc.poll()  # reaps the server itself; the others' parents or init reap them
            family = [p for p in family if not _gone(p)]
            time.sleep(0.05)
        if not family:
            break
    proc.wait()


def _gone(process) -> bool:
    """Exited: a zombie counts, as a container's init may never reap it."""
    import psutil

    try:
        return process.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def _family(leader: int) -> list:
    """The processes of the group ``leader`` leads, and the leader's descendants."""
    import psutil

    found = {}
    for process in psutil.process_iter():
        try:
            if os.getpgid(process.pid) == leader:
                found[process.pid] = process
        except (ProcessLookupError, PermissionError):
            continue
    with contextlib.suppress(psutil.NoSuchProcess):
        found.update({p.pid: p for p in psutil.Process(leader).children(recursive=True)})
    return list(found.values())
