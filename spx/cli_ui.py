"""``spx ui``: the MLflow UI or optuna-dashboard on the backends spx writes to, each bound to
127.0.0.1 by default and given its URL through the environment, never its command line."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from spx.cli_options import Store_, Tracking
from spx.errors import ConfigError

out = Console(soft_wrap=True)


def register(app: typer.Typer) -> None:
    app.command("ui")(ui)


def ui(
    which: Annotated[str, typer.Argument(help="mlflow or optuna")] = "mlflow",
    host: Annotated[str, typer.Option(help="bind address")] = "127.0.0.1",
    port: Annotated[int | None, typer.Option(help="port (mlflow 5000, optuna 8080)")] = None,
    tracking_uri: Tracking = None,
    store: Store_ = None,
) -> None:
    """Serve the MLflow UI on the same backend spx writes to, or optuna-dashboard on the
    sweeps' Optuna studies (the tpe/cmaes/nsga2/qmc sweeps, live while they run)."""
    from spx.platform.settings import resolve
    from spx.secrets import run_masked

    if which == "mlflow":
        from spx.platform.tracking import ui_command

        settings = resolve(tracking_uri=tracking_uri)
        port = port or 5000
        cmd, env = ui_command(settings.tracking_uri, settings.artifacts, host, port)
        exe = shutil.which("mlflow") or str(Path(sys.executable).with_name("mlflow"))
        cmd, what = [exe, *cmd[1:]], "MLflow UI"
    elif which == "optuna":
        from spx.dashboards.optuna_ui import STORAGE_ENV
        from spx.search.study_storage import study_storage_url

        settings = resolve(store)
        port = port or 8080
        url = study_storage_url(settings.store_url)
        if url is None:
            raise ConfigError("an in-memory store keeps no studies", field="--store")
        # optuna-dashboard takes its storage on the command line only: our launcher reads
        # it from the environment instead
        cmd = [sys.executable, "-m", "spx.dashboards.optuna_ui", host, str(port)]
        env, what = {STORAGE_ENV: url}, "optuna-dashboard"
    else:
        raise ConfigError("unknown UI; choose mlflow or optuna", field="which", value=which)
    out.print(f"{what} at http://{host}:{port}  (Ctrl-C to stop)")
    raise typer.Exit(run_masked(cmd, env))
