"""The operating commands of ``spx sweep``: stop, logs, repair, sync, and the helpers
behind ``launch --detach`` and ``status --watch``.

Thin typer commands over ``spx.platform.lifecycle`` and ``spx.platform.sync``; mounted on
the ``sweep`` app by ``register``. An unknown sweep is a NotFoundError (exit 2, naming it).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from spx.cli_options import Follow, Store_, Tracking
from spx.errors import ConfigError, NotFoundError, SweepBusyError

out = Console(soft_wrap=True, highlight=False)

_TICK_S = 0.5
_DETACH_WAIT_S = 180.0
"""How long `launch --detach` waits for its driver to write the sweep row (Ray starts first)."""


def register(app: typer.Typer) -> None:
    """Mount the operating commands on the ``spx sweep`` app."""
    app.command("stop")(stop)
    app.command("logs")(logs)
    app.command("repair")(repair)
    app.command("sync")(sync)


def _settings(store: str | None = None, tracking: str | None = None, address: str | None = None):
    from spx.platform.settings import resolve

    return resolve(store, tracking, address)


def hint_flags(settings) -> tuple[str, str]:
    """The ``--store`` and ``--tracking-uri`` flags a printed hint needs so that pasting it
    reaches the same store and MLflow: each only when its URL is not the one the shell's
    environment (or the default) already gives; masked, as every URL spx prints."""
    import shlex

    from spx.platform.settings import mask_url

    plain = _settings()
    store, tracking = "", ""
    if settings.store_url != plain.store_url:
        store = f" --store {shlex.quote(mask_url(settings.store_url))}"
    if settings.tracking_uri != plain.tracking_uri:
        tracking = f" --tracking-uri {shlex.quote(mask_url(settings.tracking_uri))}"
    return store, tracking


# -- launch --detach --------------------------------------------------------------------


def detach(
    file: Path,
    name: str | None,
    store: str | None,
    tracking: str | None,
    address: str | None,
    force: bool = False,
) -> None:
    """Start ``spx sweep launch --plain`` as a background process and return at once.

    Bad input (the file, the name) fails here, exit 2, before anything starts. The driver
    runs in its own session (a closed terminal does not stop it), writes to
    ``SPX_HOME/logs/<sweep>.log``, and is found again through ``SPX_HOME/run/<sweep>.json``.
    """
    from spx.platform import lifecycle
    from spx.platform.settings import ensure_home, mask_url
    from spx.platform.spec import load_spec
    from spx.platform.store import Store

    spec, _ = load_spec(file, name)
    settings = _settings(store, tracking, address)
    ensure_home(settings)
    with Store.open(settings.store_url) as db:
        try:
            db.get_sweep(spec.name)
        except NotFoundError:
            pass
        else:
            raise ConfigError(
                "a sweep with this name already exists in the store", field="name", value=spec.name
            )
    # URLs travel in the environment, not argv: `ps` would show a password.
    env = {**os.environ, "SPX_HOME": str(settings.home), "SPX_STORE_URL": settings.store_url}
    env["MLFLOW_TRACKING_URI"] = settings.tracking_uri
    if settings.ray_address:
        env["RAY_ADDRESS"] = settings.ray_address
    cmd = [sys.executable, "-m", "spx", "sweep", "launch", str(file.resolve()), "--plain"]
    cmd += ["--name", spec.name] + (["--force"] if force else [])
    log = lifecycle.log_path(settings, spec.name)
    with log.open("ab") as sink:
        proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=sink,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
    lifecycle.record_driver(settings, spec.name, proc.pid)
    _await_sweep_row(settings, spec.name, proc, log)
    q, (flag, _) = _quote(spec.name), hint_flags(settings)
    out.print(f"{spec.name}: driver started in the background (pid {proc.pid})")
    out.print(f"  store:  {mask_url(settings.store_url)}")
    out.print(f"  status: spx sweep status {q}{flag} --watch")
    out.print(f"  logs:   spx sweep logs {q}{flag} --follow   ({log})")
    out.print(f"  stop:   spx sweep stop {q}{flag}   (--cancel stops the running trials too)")


def _await_sweep_row(settings, name: str, proc: subprocess.Popen, log: Path) -> None:
    """Return once the driver has written the sweep's row, so the hints printed next answer
    at once; a driver that exits first (bad tracking URI, no capacity) has its log's tail
    printed and its exit code passed on. After ``_DETACH_WAIT_S`` the driver is left to run."""
    from spx.platform.store import Store

    deadline = time.monotonic() + _DETACH_WAIT_S
    with Store.open(settings.store_url) as db:
        while time.monotonic() < deadline:
            try:
                db.get_sweep(name)
                return
            except NotFoundError:
                pass
            code = proc.poll()
            if code is not None:
                try:
                    db.get_sweep(name)  # written just before it exited
                    return
                except NotFoundError:
                    tail = log.read_text(errors="replace").splitlines()[-20:]
                    err = Console(stderr=True, soft_wrap=True, highlight=False)
                    err.print(f"{name}: the driver exited with code {code} before the sweep began:")
                    err.print("\n".join(tail), markup=False)
                    raise typer.Exit(code or 1) from None
            time.sleep(_TICK_S / 2)
    out.print(f"{name}: the driver has not written the sweep yet after {_DETACH_WAIT_S:g} s")


# -- status --watch ---------------------------------------------------------------------


def watch(name: str, store: str | None, interval: float) -> int:
    """Print the sweep's state whenever it changes, every ``interval`` s, until it ends.

    Returns the exit code: 0, or 3 when trials failed; SweepBusyError when the driver died.
    """
    from spx.platform import lifecycle
    from spx.platform.store import Store

    if not interval > 0:
        raise ConfigError("must be above 0 seconds", field="--interval", value=interval)
    settings = _settings(store)
    with Store.open(settings.store_url) as db:
        last, driver = "", None
        while True:
            sweep = _sweep_or_starting(db, settings, name)
            if sweep is not None:
                trials = db.trials(sweep.id)
                line = _status_line(sweep, trials)
                if line != last:
                    out.print(f"{datetime.now():%H:%M:%S} {line}")
                    last = line
                if sweep.status in lifecycle.TERMINAL:
                    _await_exit(driver)
                    return 3 if any(t.status == "FAILED" for t in trials) else 0
                driver = _check_driver(db, settings, name) or driver
            time.sleep(interval)


def _await_exit(driver, timeout: float = 60.0) -> None:
    """A driver prints its summary after the sweep ends: give it time to exit."""
    deadline = time.monotonic() + timeout
    while driver is not None and driver.alive() and time.monotonic() < deadline:
        time.sleep(_TICK_S)


def _sweep_or_starting(db, settings, name: str):
    """The sweep row; None while a detached driver has not created it yet."""
    from spx.platform import lifecycle

    try:
        return db.get_sweep(name)
    except NotFoundError:
        record = lifecycle.find_driver(settings, name)
        if record is not None and record.alive():
            return None
        raise


def _check_driver(db, settings, name: str):
    """The sweep's live driver on this host, if any; SweepBusyError if it died midway."""
    from spx.platform import lifecycle

    record = lifecycle.find_driver(settings, name)
    if record is None or record.alive() is not False:
        return record
    if db.get_sweep(name).status not in lifecycle.TERMINAL:  # not finished a moment ago
        raise SweepBusyError(
            f"the driver of {name!r} (pid {record.pid}) has exited without finishing it: "
            f"`spx sweep repair {name}` marks its trials, `spx sweep resume {name}` continues it"
        )
    return None


def _status_line(sweep, trials) -> str:
    from spx.platform.views import sweep_dict

    data = sweep_dict(sweep, trials)
    counts = ", ".join(f"{k.lower()} {v}" for k, v in sorted(data["counts"].items()))
    line = f"{sweep.name}: {data['status']}, {data['trials']} trials ({counts or 'none'})"
    running = [f"{t.number}@{t.step or 0}" for t in trials if t.status == "RUNNING"]
    line += f"; running (trial@step): {', '.join(running)}" if running else ""
    return line + (f"; error: {sweep.error}" if sweep.error else "")


# -- stop -------------------------------------------------------------------------------


def stop(
    name: str,
    cancel: Annotated[
        bool, typer.Option("--cancel", help="also stop running trials (they end PRUNED)")
    ] = False,
    wait: Annotated[bool, typer.Option("--wait", help="return when the sweep has ended")] = False,
    store: Store_ = None,
) -> None:
    """Stop a sweep: running trials finish, no new ones start (--cancel: stop those too)."""
    from spx.platform import lifecycle
    from spx.platform.store import Store

    settings = _settings(store)
    with Store.open(settings.store_url) as db:
        sweep = lifecycle.request_stop(settings, db, name, cancel)
    if sweep.status in lifecycle.TERMINAL:
        out.print(f"{name} is already {sweep.status}; nothing to stop")
        return
    if sweep.status == "CANCELLING":
        out.print(f"{name}: cancel requested; running trials stop at their next report")
    else:
        out.print(f"{name}: stop requested; running trials finish, no new ones start")
    if wait:
        raise typer.Exit(watch(name, store, 1.0))


# -- logs -------------------------------------------------------------------------------


def logs(
    name: str,
    trial: Annotated[int | None, typer.Argument(help="a trial number: its reports")] = None,
    follow: Follow = False,
    store: Store_ = None,
) -> None:
    """The driver's log of a detached sweep, or one trial's reports (its journal)."""
    if trial is None:
        _driver_log(name, follow, store)
    else:
        _trial_log(name, trial, follow, store)


def _driver_log(name: str, follow: bool, store: str | None) -> None:
    from spx.platform import lifecycle, paths
    from spx.platform.store import Store

    settings = _settings(store)
    path = paths.find_log(settings, name)  # an earlier version's name, where only it exists
    if not path.is_file():
        with Store.open(settings.store_url) as db:
            db.get_sweep(name)  # an unknown sweep: NotFoundError naming it
        raise NotFoundError(
            f"sweep {name!r} has no driver log at {path}: only `spx sweep launch --detach` "
            "writes one (a foreground launch prints to its terminal)"
        )
    record = lifecycle.find_driver(settings, name) if follow else None

    def alive() -> bool:  # follows the process, which prints its summary after the sweep
        return record is not None and bool(record.alive())

    for chunk in _tail(path, alive):
        sys.stdout.write(chunk)
        sys.stdout.flush()


def _trial_log(name: str, number: int, follow: bool, store: str | None) -> None:
    from spx.platform import lifecycle
    from spx.platform.runner import JOURNAL
    from spx.platform.store import Store

    settings = _settings(store)
    with Store.open(settings.store_url) as db:
        sweep = db.get_sweep(name)
        trials = {t.number: t for t in db.trials(sweep.id)}
        if number not in trials:
            known = f"0..{max(trials)}" if trials else "none yet"
            raise NotFoundError(f"sweep {name!r} has no trial {number} (trials: {known})")
        path = lifecycle.trial_dir(settings, sweep, number) / JOURNAL

        def alive() -> bool:
            if not follow or db.get_sweep(name).status in lifecycle.TERMINAL:
                return False
            now = next(t for t in db.trials(sweep.id) if t.number == number)
            return now.status not in ("COMPLETED", "PRUNED", "FAILED")

        buffer = ""
        for chunk in _tail(path, alive):
            buffer += chunk
            *lines, buffer = buffer.split("\n")
            for line in lines:
                out.print(_report_line(line))


def _report_line(line: str) -> str:
    try:
        entry = json.loads(line)
    except json.JSONDecodeError:
        return line
    metrics = "  ".join(f"{k}={v:.6g}" for k, v in entry["metrics"].items())
    return f"step {entry['step']:>6}  {metrics}"


def _tail(path: Path, alive) -> Iterator[str]:
    """The file's text, then what is appended to it while ``alive()``; a missing file is empty."""
    offset = 0
    while True:
        going = alive()  # asked before reading, so the last appends are read after it ends
        if path.is_file():
            with path.open() as fh:
                fh.seek(offset)
                chunk = fh.read()
                offset = fh.tell()
            if chunk:
                yield chunk
        if not going:
            return
        time.sleep(_TICK_S)


# -- repair and sync --------------------------------------------------------------------


def repair(
    name: str,
    force: Annotated[
        bool, typer.Option("--force", help="treat every RUNNING trial as dead, heartbeat or not")
    ] = False,
    store: Store_ = None,
    tracking_uri: Tracking = None,
) -> None:
    """After a driver died: mark its trials LOST (or FAILED), end their MLflow runs."""
    from spx.platform.lifecycle import repair as repair_sweep

    report = repair_sweep(_settings(store, tracking_uri), name, force)
    for s in report.settled:
        out.print(f"trial {s.trial.number}: RUNNING -> {s.status} ({s.error})")
    lost = sum(not s.failed for s in report.settled)
    out.print(
        f"{name}: {report.sweep.status}; {lost} trials LOST, "
        f"{len(report.settled) - lost} FAILED, {report.replayed} journal rows stored"
    )
    if report.mlflow_failures:
        out.print(f"MLflow: {report.mlflow_failures} calls failed; run `spx sweep sync {name}`")
    if lost:
        out.print(f"continue it with: spx sweep resume {_quote(name)}")


def sync(
    name: str,
    force: Annotated[
        bool, typer.Option("--force", help="sync even if a driver may still hold the sweep")
    ] = False,
    store: Store_ = None,
    tracking_uri: Tracking = None,
) -> None:
    """Copy a sweep from the store into MLflow; running it again changes nothing."""
    from spx.platform.settings import mask_url
    from spx.platform.sync import sync_sweep

    settings = _settings(store, tracking_uri)
    r = sync_sweep(settings, name, force)
    what = (
        f"{r.runs_created} runs created, {r.params} params, {r.tags} tags, "
        f"{r.metrics} metric points, {r.statuses} statuses written"
    )
    out.print(f"{name} -> MLflow {mask_url(settings.tracking_uri)} (experiment {r.experiment_id})")
    out.print(f"  {what}" if r.changed else "  already in sync: nothing written")


def _quote(name: str) -> str:
    return name if name.replace("-", "").replace("_", "").isalnum() else repr(name)
