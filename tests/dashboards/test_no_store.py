"""Read commands on a URL with no store behind it say "no store at ...", exit 2, and create
nothing: no SQLite file or folder, no PostgreSQL tables (the installed `spx`)."""

from __future__ import annotations

import os
import subprocess
import uuid

import pytest
import sqlalchemy as sa
from helpers import spx_exe

pytestmark = pytest.mark.e2e

READS = [
    ("sweep", "list"),
    ("sweep", "show", "x"),
    ("sweep", "status", "x"),
    ("sweep", "export", "x", "-o", "{out}/trials.csv"),
    ("analyze", "scaling-law", "x"),
    ("analyze", "pareto", "x", "--objective", "val/acc:max"),
    ("report", "x", "-o", "{out}/report.html"),
    ("query", "SELECT 1"),
]


def _run_all(commands: list[list[str]], cwd, env: dict[str, str]) -> list[tuple[int, str]]:
    """Run the commands at once (each is a few seconds of imports), then collect them."""
    full = {**os.environ, "SPX_STORE_URL": "", **env}
    procs = [
        subprocess.Popen(
            [spx_exe(), *c], cwd=cwd, env=full, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        for c in commands
    ]
    return [(p.wait(timeout=300), p.communicate()[1].decode()) for p in procs]


def test_a_mistyped_sqlite_path_is_no_store_and_creates_nothing(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    url = f"sqlite:///{tmp_path / 'nope' / 'typo.db'}"
    commands = [[*(a.format(out=out) for a in args), "--store", url] for args in READS]
    home = tmp_path / "home"  # the default store, $SPX_HOME/spx.db, before any launch
    commands.append(["sweep", "list"])
    results = _run_all(commands, tmp_path, {"SPX_HOME": str(home)})
    for command, (code, stderr) in zip(commands, results, strict=True):
        assert code == 2, (command, stderr)
        assert "no store at sqlite:///" in stderr and "Traceback" not in stderr, (command, stderr)
    assert "typo.db" in results[0][1] and str(home / "spx.db") in results[-1][1]
    assert not (tmp_path / "nope").exists() and not home.exists()
    assert list(out.iterdir()) == []


@pytest.mark.postgres
def test_a_schema_or_database_without_spx_tables_is_no_store(postgres_url, tmp_path):
    missing_db = sa.make_url(postgres_url).set(database=f"spx_nope_{uuid.uuid4().hex[:8]}")
    other = missing_db.render_as_string(hide_password=False)
    reads = [READS[0], READS[1], READS[6], READS[7]]
    commands = [[*(a.format(out=tmp_path) for a in r), "--store", postgres_url] for r in reads]
    commands.append(["sweep", "list", "--store", other])
    results = _run_all(commands, tmp_path, {})
    for command, (code, stderr) in zip(commands, results, strict=True):
        assert code == 2, (command, stderr)
        assert "no store at postgresql+psycopg://" in stderr, (command, stderr)
    assert "holds no spx tables" in results[0][1]
    assert "does not exist" in results[-1][1]
    engine = sa.create_engine(postgres_url)
    try:
        assert sa.inspect(engine).get_table_names() == []  # nothing was created or migrated
    finally:
        engine.dispose()
    assert not (tmp_path / "report.html").exists()
