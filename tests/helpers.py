"""Helpers shared by tests: the repository root and the installed `spx` command."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def spx_exe() -> str:
    found = Path(sys.executable).with_name("spx")
    return str(found) if found.exists() else (shutil.which("spx") or "spx")


def run_spx(*args: str, cwd: Path, env: dict[str, str] | None = None, timeout: int = 600):
    """Run the installed `spx` in a subprocess; returns the CompletedProcess."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(
        [spx_exe(), *args], cwd=cwd, env=full_env, capture_output=True, text=True, timeout=timeout
    )
