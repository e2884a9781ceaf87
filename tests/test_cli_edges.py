"""The CLI's output at its edges: tables in a pipe are whole tab-separated lines, a reader
that closes the pipe early is a quiet exit 0, a terminal still gets rich tables.

Each test runs the installed `spx` on a real SQLite store written with the Store API."""

from __future__ import annotations

import doctest
import os
import pty
import subprocess

import pytest
from helpers import run_spx, spx_exe

from spx import cli_output
from spx.platform.store import Store, SweepStatus, TrialStatus

pytestmark = pytest.mark.e2e

LONG_NAME = "ux-tpe-asha-replay-" + "x" * 200
LONG_VALUE = "a config string that is long, " * 8 + "and\tends\nhere"
ESCAPED = LONG_VALUE.replace("\t", "\\t").replace("\n", "\\n")  # as a pipe shows it
SPEC = "name: s\ntask: digits-mlp\nobjective: [{metric: val/loss}, {metric: model/params}]\n"
STORED = [0.123456789, 0.1 + 0.2, 1e-300, 12345678.901234567]


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    """Sweep LONG_NAME: trial i has lr and loss STORED[i], a long string param ending in i."""
    home = tmp_path_factory.mktemp("edges") / "home"
    with Store.open(f"sqlite:///{home / 'spx.db'}") as store:
        sweep = store.create_sweep(LONG_NAME, task="t", method="grid", spec_text=SPEC, spec_hash="")
        for i, value in enumerate(STORED):
            params = {"train.lr": value, "note": f"{LONG_VALUE}{i}", "i": i}
            trial = store.add_trial(sweep.id, i, params)
            metrics = {"val/loss": value, "model/params": 100 - i}
            store.update_trial(trial.id, status=TrialStatus.COMPLETED, metrics=metrics)
        store.update_sweep(sweep.id, status=SweepStatus.COMPLETED, started=True, finished=True)
    return home


def spx(home, *args):
    proc = run_spx(*args, cwd=home.parent, env={"SPX_HOME": str(home), "SPX_STORE_URL": ""})
    assert proc.returncode == 0, proc.stderr
    return [line.split("\t") for line in proc.stdout.splitlines()]


def test_sweep_list_in_a_pipe_is_one_whole_line_per_sweep(home):
    header, *rows = spx(home, "sweep", "list")
    assert header == ["name", "task", "method", "status", "trials", "created"]
    assert [r[:5] for r in rows] == [[LONG_NAME, "t", "grid", "COMPLETED", "4"]]


def test_sweep_show_in_a_pipe_keeps_names_and_floats_whole(home):
    header, *rows = spx(home, "sweep", "show", LONG_NAME)
    assert header[:6] == ["trial", "status", "i", "note", "train.lr", "val/loss"]
    assert len(rows) == len(STORED)
    for i, row in enumerate(rows):
        assert row[:4] == [str(i), "COMPLETED", str(i), f"{ESCAPED}{i}"]
        assert float(row[4]) == STORED[i] and float(row[5]) == STORED[i]  # round trip
    assert rows[0][4] == "0.123456789"


def test_sweep_show_pareto_in_a_pipe(home):
    header, *rows = spx(home, "sweep", "show", LONG_NAME, "--pareto")
    assert header[2:5] == ["i", "note", "train.lr"] and "val/loss" in header
    # trial 2 (loss 1e-300) beats trials 0 and 1 on both; trial 3 has the fewest params
    assert sorted(int(r[0]) for r in rows) == [2, 3]


def test_query_in_a_pipe_is_tab_separated_and_escapes_tabs_and_newlines(home):
    sql = "SELECT number, json_extract(params, '$.note') AS note FROM trials ORDER BY number"
    header, *rows = spx(home, "query", sql)
    assert header == ["number", "note"]
    assert rows == [[str(i), f"{ESCAPED}{i}"] for i in range(len(STORED))]  # whole, escaped
    header, *rows = spx(home, "query", "SELECT 0.123456789 AS x, 1.0 / 3 AS third")
    assert rows == [["0.123456789", repr(1.0 / 3)]]


def test_a_terminal_still_gets_a_rich_table(home):
    leader, follower = pty.openpty()
    env = {**os.environ, "SPX_HOME": str(home), "SPX_STORE_URL": "", "COLUMNS": "100"}
    proc = subprocess.Popen(
        [spx_exe(), "sweep", "list"], stdout=follower, stderr=subprocess.PIPE, env=env
    )
    os.close(follower)
    chunks = []
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # EIO: the command closed the terminal
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(leader)
    assert proc.wait(timeout=60) == 0, proc.stderr.read()
    text = b"".join(chunks).decode()
    assert "┃" in text and "\t" not in text
    assert "ux-tpe-asha-replay-xxx" in text.replace("\r\n", "")  # folded, not cut with …
    assert "…" not in text


ROWS_SQL = (
    "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c LIMIT 200000) "
    "SELECT x, x / 7.0 AS y FROM c"
)


@pytest.mark.parametrize("mode", [["--csv"], [], ["--json"]], ids=["csv", "tsv", "json"])
def test_a_reader_that_closes_early_is_a_quiet_exit_0(home, mode):
    """`spx query ... | head -1`: megabytes of output, the reader gone after one line."""
    env = {**os.environ, "SPX_HOME": str(home), "SPX_STORE_URL": ""}
    proc = subprocess.Popen(
        [spx_exe(), "query", ROWS_SQL, "--limit", "200000", *mode],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    assert proc.stdout is not None and proc.stderr is not None
    first = proc.stdout.readline()
    proc.stdout.close()
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 0, err
    assert first.strip() in (b"x,y", b"x\ty", b"[")
    assert "Traceback" not in err and "BrokenPipe" not in err and "Exception" not in err


def test_output_helper_examples():
    assert doctest.testmod(cli_output).failed == 0
