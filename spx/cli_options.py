"""The options several ``spx`` commands share, each spelled and documented once."""

from __future__ import annotations

from typing import Annotated

import typer

Store_ = Annotated[str | None, typer.Option("--store", help="results store URL (SPX_STORE_URL)")]
Tracking = Annotated[
    str | None, typer.Option("--tracking-uri", help="MLflow tracking URI (MLFLOW_TRACKING_URI)")
]
Address = Annotated[str | None, typer.Option("--address", help="Ray cluster address (RAY_ADDRESS)")]
AsJson = Annotated[bool, typer.Option("--json", help="print JSON")]
Plain = Annotated[bool, typer.Option("--plain", help="plain lines, no live panel")]
Follow = Annotated[bool, typer.Option("--follow", "-f", help="keep printing until it ends")]
Force = Annotated[bool, typer.Option("--force", help="overwrite an existing output file")]
