"""`spx query` stays read-only against hostile SQL, on a real SQLite file and the real
PostgreSQL: the statements of issue 14 are refused, and nothing changes afterwards (row
counts, tables, the SQLite file's bytes and mtime, the files in its folder, /tmp)."""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import subprocess
import uuid
from pathlib import Path

import pytest
import sqlalchemy as sa
from helpers import run_spx, spx_exe, wait_for

import spx.platform.readonly as readonly
from spx.dashboards.query import run_query
from spx.errors import ConfigError
from spx.platform.store import Store

MARK = f"/tmp/spx-query-{uuid.uuid4().hex[:12]}"  # the postgres OS user can write /tmp

# (statement, what the refusal says); {mark} is a file the statement would create.
HOSTILE = [
    ("COMMIT; DELETE FROM metrics WHERE step = 10", "exactly one statement"),
    ("ROLLBACK; CREATE TABLE sneaky (a integer)", "exactly one statement"),
    ("SELECT 1; COPY (SELECT 1) TO PROGRAM 'id > {mark}'", "exactly one statement"),
    ("COPY (SELECT 1) TO PROGRAM 'id > {mark}'", "write statements are refused"),
    ("COPY (SELECT 1) TO '{mark}'", "write statements are refused"),
    ("/* hi */ copy trials to stdout", "write statements are refused"),
    ("SELECT pg_read_file('/etc/hostname')", "'pg_read_file' is not allowed"),
    ("SELECT * FROM pg_ls_dir('.')", "'pg_ls_dir' is not allowed"),
    ("SELECT lo_import('/etc/hostname')", "'lo_import' is not allowed"),
    ("SELECT pg_catalog.lo_export(1, '{mark}')", "'lo_export' is not allowed"),
    ("SELECT dblink('dbname=test', 'DELETE FROM metrics')", "'dblink' is not allowed"),
    ("SELECT pg_advisory_lock(42)", "'pg_advisory_lock' is not allowed"),
    ("SELECT pg_try_advisory_xact_lock(42)", "'pg_try_advisory_xact_lock' is not allowed"),
    ("SELECT set_config('role', 'postgres', true)", "'set_config' is not allowed"),
    ("SELECT query_to_xml('DELETE FROM metrics', true, true, '')", "is not allowed"),
    ("SELECT \"pg_read_file\"('/etc/hostname')", "'pg_read_file' is not allowed"),
    ("WITH gone AS (DELETE FROM metrics RETURNING 1) SELECT 1", "write statements are refused"),
    ("SELECT * INTO sneaky FROM trials", "write statements are refused"),
    ("SELECT * FROM trials FOR UPDATE", "write statements are refused"),
    ("ATTACH DATABASE '{mark}' AS other", "write statements are refused"),
    ("VACUUM INTO '{mark}'", "write statements are refused"),
    ("SELECT load_extension('{mark}')", "'load_extension' is not allowed"),
    ("PRAGMA journal_mode = DELETE", "write statements are refused"),
    ("SELECT 1 /* unclosed", "not closed"),
    ("SELECT $$ DELETE FROM metrics", "not closed|write statements are refused"),
]


def _snapshot(url: str) -> dict:
    """Everything a write would change: for SQLite the file itself and the folder's listing
    (taken first: the counting connection below tidies -wal/-shm files when it closes), then
    row counts and tables."""
    state: dict = {}
    if url.startswith("sqlite"):
        path = Path(sa.make_url(url).database or "")
        state["file"] = (hashlib.sha256(path.read_bytes()).hexdigest(), path.stat().st_mtime_ns)
        state["folder"] = sorted(p.name for p in path.parent.iterdir())
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            state["counts"] = {
                t: conn.execute(sa.text(f"SELECT count(*) FROM {t}")).scalar()
                for t in ("sweeps", "trials", "metrics")
            }
        state["tables"] = sorted(sa.inspect(engine).get_table_names())
    finally:
        engine.dispose()
    return state


@pytest.fixture
def at_rest(seeded, store_url):
    """The seeded store closed (so SQLite's -wal/-shm are gone) and its snapshot."""
    seeded.close()
    Path(MARK).unlink(missing_ok=True)
    before = _snapshot(store_url)
    assert before["counts"]["metrics"] == 24
    yield before
    Path(MARK).unlink(missing_ok=True)


def test_hostile_statements_are_refused_and_change_nothing(at_rest, store_url):
    wrong = []
    for sql, message in HOSTILE:
        try:
            run_query(store_url, sql.format(mark=MARK))
        except ConfigError as exc:
            if not (str(exc).startswith("query: ") and re.search(message, str(exc))):
                wrong.append((sql, str(exc)))
        else:
            wrong.append((sql, "ran"))
        assert _snapshot(store_url) == at_rest, sql
        assert not Path(MARK).exists(), sql
    assert wrong == []


# What the database refuses by itself, when the text check is taken away.
BEHIND_THE_CHECK = [
    "COMMIT; DELETE FROM metrics WHERE step = 10",
    "ROLLBACK; CREATE TABLE sneaky (a integer)",
    "COPY (SELECT 1) TO PROGRAM 'id > {mark}'",
    "COPY (SELECT 1) TO '{mark}'",
    "SELECT pg_read_file('/etc/hostname')",
    "SELECT pg_ls_dir('.')",
    "SELECT lo_import('/etc/hostname')",
    "DELETE FROM metrics",
    "WITH gone AS (DELETE FROM metrics RETURNING 1) SELECT 1",
    "ATTACH DATABASE '{mark}' AS other",
    "VACUUM INTO '{mark}'",
    "SELECT load_extension('{mark}')",
    "PRAGMA journal_mode = DELETE",
    "CREATE TEMP TABLE t (a integer)",
]


def test_the_database_refuses_them_without_the_text_check(at_rest, store_url, monkeypatch):
    # raising=False: the same test runs against code without the check (it must fail there).
    monkeypatch.setattr(readonly, "check_read_sql", lambda sql, dialect: None, raising=False)
    for sql in BEHIND_THE_CHECK:
        with pytest.raises(ConfigError, match="^query: "):
            run_query(store_url, sql.format(mark=MARK))
        assert _snapshot(store_url) == at_rest, sql
        assert not Path(MARK).exists(), sql


def test_reads_leave_the_sqlite_file_and_folder_as_they_were(at_rest, store_url):
    df = run_query(store_url, "SELECT count(*) AS n FROM metric_history")
    assert df["n"][0] == 24
    assert _snapshot(store_url) == at_rest


def _is_superuser(url: str) -> bool:
    if not url.startswith("postgresql"):
        return False
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return conn.execute(sa.text("SELECT current_setting('is_superuser')")).scalar() == "on"
    finally:
        engine.dispose()


@pytest.mark.postgres
def test_a_superuser_runs_the_statement_without_its_powers(postgres_url, seed):
    if not _is_superuser(postgres_url):
        pytest.skip("the test server's role is not a superuser")
    with Store.open(postgres_url) as store:
        seed(store)
    df = run_query(postgres_url, "SELECT current_user AS who, count(*) AS n FROM trials")
    assert df.to_dict("records") == [{"who": "pg_read_all_data", "n": 4}]
    assert any("superuser" in note for note in df.attrs["notes"])


# -- the installed `spx query` --------------------------------------------------------


def _spx(url: str, *args: str, cwd: Path):
    return run_spx("query", "--store", url, *args, cwd=cwd, env={"SPX_STORE_URL": ""})


@pytest.mark.e2e
def test_the_cli_refuses_with_exit_2_naming_query(at_rest, store_url, tmp_path):
    for sql, message in [
        ("COMMIT; DELETE FROM metrics WHERE step = 10", "query: exactly one statement"),
        ("ATTACH DATABASE '{mark}' AS other", "query: the store is read-only here"),
    ]:
        proc = _spx(store_url, sql.format(mark=MARK), cwd=tmp_path)
        assert proc.returncode == 2, proc.stdout + proc.stderr
        assert message in proc.stderr and "Traceback" not in proc.stderr
        assert _snapshot(store_url) == at_rest
        assert not Path(MARK).exists()
    proc = _spx(store_url, "SELECT count(*) AS n FROM metrics", "--json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == [{"n": 24}]
    assert ("superuser" in proc.stderr) == _is_superuser(store_url), proc.stderr


@pytest.mark.e2e
def test_csv_streams_rows_and_says_when_the_limit_cut_them(at_rest, store_url, tmp_path):
    proc = _spx(store_url, "SELECT step FROM metrics ORDER BY step", "--csv", "--limit", "3",
                cwd=tmp_path)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ["step", "10", "10", "10"]
    assert "output cut at 3 rows (--limit)" in proc.stderr


def _peak_rss_mb(url: str, rows: int, cwd: Path) -> float:
    sql = (
        f"WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < {rows})"
        " SELECT n, 'some thirty-two characters of text' || n AS s FROM r"
    )
    cmd = [spx_exe(), "query", "--store", url, "--csv", "--limit", str(rows), sql]
    with (cwd / "out.csv").open("w") as sink:
        proc = subprocess.Popen(cmd, stdout=sink, stderr=subprocess.DEVNULL, cwd=cwd)
        _, status, usage = os.wait4(proc.pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert sum(1 for _ in (cwd / "out.csv").open()) == rows + 1
    return usage.ru_maxrss / 1024  # KiB on Linux


@pytest.mark.e2e
def test_csv_memory_does_not_grow_with_the_rows(tmp_path):
    url = f"sqlite:///{tmp_path / 'spx.db'}"
    Store.open(url).close()
    small, large = _peak_rss_mb(url, 10, tmp_path), _peak_rss_mb(url, 200_000, tmp_path)
    # Holding 200 000 rows (the old fetchall + DataFrame + one CSV string) took ~65 MB more.
    assert large - small < 25, (small, large)


@pytest.mark.e2e
@pytest.mark.postgres
def test_ctrl_c_cancels_the_query_on_the_server(postgres_url, tmp_path):
    Store.open(postgres_url).close()
    marker = f"spx_cancel_{uuid.uuid4().hex[:8]}"
    cmd = [spx_exe(), "query", "--store", postgres_url, f"SELECT pg_sleep(60) AS {marker}"]
    proc = subprocess.Popen(cmd, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    admin = sa.create_engine(postgres_url)
    active = sa.text(
        "SELECT count(*) FROM pg_stat_activity"
        " WHERE strpos(query, :marker) > 0 AND pid <> pg_backend_pid()"
    )

    def running() -> int:
        with admin.connect() as conn:
            return conn.execute(active, {"marker": marker}).scalar() or 0

    try:
        wait_for(running, timeout=60, every=0.2)
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=20) == 130
        wait_for(lambda: running() == 0, timeout=5, every=0.2)  # not 60 s: cancelled
    finally:
        proc.kill()
        admin.dispose()


@pytest.fixture
def reader_url(postgres_url):
    """A login role set up as docs/store.md says: it can read the store's schema, no more."""
    if not _is_superuser(postgres_url):
        pytest.skip("creating a role needs the test server's superuser")
    Store.open(postgres_url).close()
    url = sa.make_url(postgres_url)
    schema = url.query["options"].split("=", 1)[1]
    role = f"spx_reader_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(postgres_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f"CREATE ROLE {role} LOGIN"))
        conn.execute(sa.text(f"ALTER ROLE {role} SET default_transaction_read_only = on"))
        conn.execute(sa.text(f"GRANT CONNECT ON DATABASE {url.database} TO {role}"))
        conn.execute(sa.text(f'GRANT USAGE ON SCHEMA "{schema}" TO {role}'))
        conn.execute(sa.text(f'GRANT SELECT ON ALL TABLES IN SCHEMA "{schema}" TO {role}'))
    try:
        yield url.set(username=role, password=None).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f"DROP OWNED BY {role}"))
            conn.execute(sa.text(f"DROP ROLE {role}"))
        admin.dispose()


@pytest.mark.e2e
@pytest.mark.postgres
def test_a_read_only_role_reads_and_gets_no_superuser_note(reader_url, tmp_path, monkeypatch):
    proc = _spx(reader_url, "SELECT current_user AS who, count(*) AS n FROM trial_summary",
                "--json", cwd=tmp_path)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == [{"who": sa.make_url(reader_url).username, "n": 0}]
    assert "superuser" not in proc.stderr
    monkeypatch.setattr(readonly, "check_read_sql", lambda sql, dialect: None, raising=False)
    for sql in ("SELECT pg_read_file('/etc/hostname')", "DELETE FROM metrics"):
        with pytest.raises(ConfigError, match="^query: the (database refused|store is read-only)"):
            run_query(reader_url, sql)
