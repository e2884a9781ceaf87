"""`spx analyze scaling-law` and `spx report` say when a fit cannot tell: the installed
command on a real SQLite store (no Ray). The sweeps are the literal ones of
test_scaling.py: tokens held constant, two token budgets, a loss that follows no law."""

from __future__ import annotations

import json

import pytest
from helpers import load_test_module, run_spx

from spx.platform.store import Store, TrialStatus

pytestmark = pytest.mark.e2e
LAW = ("analyze", "scaling-law")


# Test folders are not packages here: the literal sweeps are loaded by path, not copied.
_scaling = load_test_module("dashboards/test_scaling.py", "spx_tests_scaling")
NOISE, grid_trials = _scaling.NOISE, _scaling.grid_trials


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    home = tmp_path_factory.mktemp("fits") / "home"
    sweeps = {
        "flat-tokens": grid_trials([1e8, 1e8]),
        "two-budgets": grid_trials([1e7, 1e8]),
        "noise": NOISE,
    }
    with Store.open(f"sqlite:///{home / 'spx.db'}") as store:
        for name, df in sweeps.items():
            sweep = store.create_sweep(name, task="t", method="grid", spec_text="", spec_hash="0")
            for number, row in enumerate(df.itertuples(index=False)):
                trial = store.add_trial(sweep.id, number, {"model.width": number})
                metrics = {
                    "model/params_avg": row[1],
                    "data/tokens": row[2],
                    "val/loss": row[3],
                }
                store.update_trial(trial.id, status=TrialStatus.COMPLETED, metrics=metrics)
    return home


def spx(home, *args):
    # Wide, so a rich table in a pipe keeps its cells whole.
    env = {"SPX_HOME": str(home), "SPX_STORE_URL": "", "COLUMNS": "300"}
    return run_spx(*args, cwd=home.parent, env=env)


def assert_no_library_warnings(stderr: str) -> None:
    for noise in ("RuntimeWarning", "overflow", "invalid value", "Traceback"):
        assert noise not in stderr, stderr


def test_constant_tokens_exit_2_naming_the_column_and_its_one_value(home):
    proc = spx(home, *LAW, "flat-tokens", "--law", "journey")
    assert proc.returncode == 2, proc.stderr
    assert "data/tokens" in proc.stderr and "1 distinct value" in proc.stderr
    assert proc.stdout == ""  # no table, no coefficient
    assert_no_library_warnings(proc.stderr)


def test_unpinned_coefficients_are_flagged_in_the_table_and_the_json(home):
    table = spx(home, *LAW, "two-budgets", "--bootstrap", "20")
    assert table.returncode == 0, table.stderr
    assert "identifiable" in table.stdout and "NO: E, B, beta" in table.stdout
    assert "warning: beta is not identifiable" in table.stdout
    assert_no_library_warnings(table.stderr)
    proc = spx(home, *LAW, "two-budgets", "--bootstrap", "20", "--json")
    (fit,) = json.loads(proc.stdout)
    assert fit["identifiable"] == {"E": False, "A": True, "alpha": True, "B": False, "beta": False}
    assert fit["converged"] is True  # beside identifiability, not instead of it


def test_a_fit_worse_than_the_mean_is_warned_in_the_table_plot_and_report(home):
    page = home.parent / "fit.html"
    proc = spx(home, *LAW, "noise", "--bootstrap", "20", "--plot", str(page))
    assert proc.returncode == 0, proc.stderr
    assert "warning: R² = -" in proc.stdout and "worse than the mean" in proc.stdout
    assert "WARNING, unreliable fit (R" in page.read_text()  # plotly writes R\u00b2
    assert_no_library_warnings(proc.stderr)
    report = spx(home, "report", "noise", "-o", "report.html")
    assert report.returncode == 0, report.stderr
    text = (home.parent / "report.html").read_text()
    assert "Warning: R² = -" in text and "worse than the mean" in text
    assert "WARNING, unreliable fit (R" in text  # the plot's title: not a plain curve
    assert "<th>identifiable</th>" in text
    assert_no_library_warnings(report.stderr)
