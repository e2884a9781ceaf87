"""`spx analyze compare-laws`, the installed command on a real SQLite store (no Ray): the
sweeps of test_compare.py, one drawn from the N_avg law and one at a single token budget."""

from __future__ import annotations

import json

import pytest
from helpers import load_test_module, run_spx

from spx.platform.store import Store, TrialStatus

pytestmark = pytest.mark.e2e
COMPARE = ("analyze", "compare-laws")

_compare = load_test_module("dashboards/test_compare.py", "spx_tests_compare")


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    home = tmp_path_factory.mktemp("compare") / "home"
    sweeps = {
        "journey": _compare.sweep("journey"),
        "one-budget": _compare.sweep("journey", budgets=(1e9,)),
    }
    with Store.open(f"sqlite:///{home / 'spx.db'}") as store:
        for name, df in sweeps.items():
            sweep = store.create_sweep(name, task="t", method="grid", spec_text="", spec_hash="0")
            for number, row in enumerate(df.to_dict("records")):
                params, metrics = (
                    {k[len(p) :]: v for k, v in row.items() if k.startswith(p)}
                    for p in ("params.", "metrics.")
                )
                trial = store.add_trial(sweep.id, number, params)
                store.update_trial(trial.id, status=TrialStatus.COMPLETED, metrics=metrics)
    return home


def spx(home, *args):
    env = {"SPX_HOME": str(home), "SPX_STORE_URL": "", "COLUMNS": "300"}
    return run_spx(*args, cwd=home.parent, env=env)


def test_the_table_says_how_it_folded_and_gives_the_verdict(home):
    proc = spx(home, *COMPARE, "journey", "--laws", "chinchilla,journey", "--bootstrap", "500")
    assert proc.returncode == 0, proc.stderr
    assert "5 folds by config group; 72 of 72 usable trials predicted" in proc.stdout
    assert "verdict: journey predicts better" in proc.stdout
    assert "Traceback" not in proc.stderr


def test_json_with_repeated_law_options(home):
    proc = spx(home, *COMPARE, "journey", "--law", "journey", "--law", "chinchilla", "--json")
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["laws"] == ["journey", "chinchilla"] and result["winner"] == "journey"
    assert result["significant"] is True and result["interval"][1] < 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("one-budget",), "needs metrics.data/tokens to vary, but it has 1 distinct value"),
        (("journey", "--laws", "journey,power"), "compares laws with fixed inputs"),
    ],
)
def test_bad_input_exits_2_naming_it(home, args, message):
    proc = spx(home, *COMPARE, *args)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert message in proc.stderr and "Traceback" not in proc.stderr
    assert proc.stdout == ""
