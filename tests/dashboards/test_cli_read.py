"""The installed `spx` read commands, end to end on a real SQLite store (no Ray)."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import numpy as np
import pytest
from helpers import run_spx

from spx.platform.store import Store, TrialStatus

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    """A store with a 12-trial sweep following L = 0.5 + 20 x^-0.3, and an empty sweep."""
    home = tmp_path_factory.mktemp("read") / "home"
    with Store.open(f"sqlite:///{home / 'spx.db'}") as store:
        sweep = store.create_sweep("law", task="t", method="grid", spec_text="", spec_hash="0")
        for i, x in enumerate(np.geomspace(1e3, 1e6, 12)):
            params = {"prune.method": "magnitude", "prune.sparsity": i / 12}
            trial = store.add_trial(sweep.id, i, params)
            metrics = {"model/flops": x, "val/loss": 0.5 + 20 * x**-0.3, "val/acc": i / 12}
            metrics["model/sparsity"] = i / 12
            store.update_trial(trial.id, status=TrialStatus.COMPLETED, metrics=metrics)
            store.upsert_metrics(
                trial.id, [(s, "model/sparsity", i / 12 * s / 3) for s in (1, 2, 3)]
            )
        store.create_sweep("empty", task="t", method="grid", spec_text="", spec_hash="0")
    return home


def spx(home, *args):
    return run_spx(*args, cwd=home.parent, env={"SPX_HOME": str(home), "SPX_STORE_URL": ""})


def test_scaling_law_json(home):
    proc = spx(
        home,
        "analyze",
        "scaling-law",
        "law",
        "--law",
        "power",
        "--x",
        "model/flops",
        "--bootstrap",
        "10",
        "--json",
    )
    assert proc.returncode == 0, proc.stderr
    (fit,) = json.loads(proc.stdout)
    assert fit["coefficients"]["alpha"] == pytest.approx(0.3, rel=1e-3)
    assert fit["n"] == 12 and fit["converged"] is True


def test_scaling_law_plot_writes_a_png_and_refuses_other_suffixes(home):
    png = home.parent / "fit.png"
    args = ("analyze", "scaling-law", "law", "--law", "power", "--x", "model/flops")
    proc = spx(home, *args, "--bootstrap", "10", "--plot", str(png))
    assert proc.returncode == 0, proc.stderr
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000
    bad = spx(home, *args, "--plot", str(home.parent / "fit.pdf"))
    assert bad.returncode == 2 and "--plot" in bad.stderr


def test_pareto_table_and_json(home):
    proc = spx(
        home,
        "analyze",
        "pareto",
        "law",
        "--objective",
        "val/acc:max",
        "--objective",
        "model/flops:min",
        "--json",
    )
    assert proc.returncode == 0, proc.stderr
    assert [r["number"] for r in json.loads(proc.stdout)] == list(range(11, -1, -1))


def test_query_csv_and_json(home):
    sql = "SELECT number, val_loss FROM trial_summary WHERE number < 2 ORDER BY number"
    proc = spx(home, "query", sql, "--csv")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[0] == "number,val_loss"
    proc = spx(home, "query", sql, "--json")
    assert [r["number"] for r in json.loads(proc.stdout)] == [0, 1]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("analyze", "scaling-law", "nope"), "no sweep named 'nope'"),
        (("analyze", "scaling-law", "law", "--law", "power", "--x", "zzz"), "available:"),
        (("analyze", "scaling-law", "law", "--law", "journey"), "no input column"),
        (("analyze", "scaling-law", "empty"), "no completed trials"),
        (("analyze", "scaling-law", "law", "--law", "kaplan"), "unknown law"),
        (("analyze", "pareto", "law", "--objective", "val/acc"), "COLUMN:min or COLUMN:max"),
        (("query", "DELETE FROM trials"), "write statements are refused"),
        (("query", "SELEC 1"), "rejected the query"),
    ],
)
def test_bad_input_exits_2_with_a_message_and_no_traceback(home, args, message):
    proc = spx(home, *args)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr


def test_import_spx_stays_cheap_and_exports_the_read_api():
    code = (
        "import sys, spx; assert 'pandas' not in sys.modules and 'torch' not in sys.modules;"
        "assert callable(spx.fit_scaling_law) and callable(spx.pareto_front);"
        "print(spx.Sweep.__name__)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "Sweep"


def test_report_is_one_self_contained_html_file(home):
    proc = spx(home, "report", "law", "-o", "report.html")
    assert proc.returncode == 0, proc.stderr
    text = (home.parent / "report.html").read_text()
    assert text.startswith("<!DOCTYPE html>")
    assert "Best trials" in text and "Scaling law" in text
    # Two plots, and plotly.js embedded in the page rather than fetched from a CDN.
    assert text.count("Plotly.newPlot(") >= 2
    assert re.search(r"<script[^>]*\bsrc=", text) is None
