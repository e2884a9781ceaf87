"""compare-laws on sweeps drawn from a known law (pure math on DataFrames, no store).

The sweeps mix dense and sparse runs: 4 widths x 3 token budgets x final sparsity, each
configuration run with 2 seeds, the loss from either the N_avg law (Jin et al. 2025) or
the final-N law (Chinchilla), with 1 % noise. N_avg is the closed form of the 0.25 -> 0.75
cubic schedule.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from spx.dashboards.compare import compare_laws
from spx.errors import ConfigError, ConstantInputError

TRUE = {"E": 1.69, "A": 406.4, "alpha": 0.34, "B": 410.7, "beta": 0.28}
WIDTHS = (1e6, 3e6, 1e7, 3e7)
BUDGETS = (1e8, 1e9, 1e10)


def sweep(
    law: str,
    sparsities: tuple[float, ...] = (0.0, 0.5, 0.8),
    budgets: tuple[float, ...] = BUDGETS,
    seed: int = 0,
) -> pd.DataFrame:
    """One trial per width x budget x sparsity x replicate seed; ``law`` is "journey"
    (loss in N_avg) or "chinchilla" (loss in final N)."""
    rng = np.random.default_rng(seed)
    rows = []
    for sparsity in sparsities:
        for width in WIDTHS:
            for tokens in budgets:
                for replicate in (0, 1):
                    n_avg = width * (0.25 + 0.5 * (1 - 0.75 * sparsity) + 0.25 * (1 - sparsity))
                    n_final = width * (1 - sparsity)
                    n = n_avg if law == "journey" else n_final
                    loss = TRUE["E"] + TRUE["A"] / n ** TRUE["alpha"]
                    loss += TRUE["B"] / tokens ** TRUE["beta"]
                    rows.append(
                        {
                            "status": "COMPLETED",
                            "params.model.width": width,
                            "params.prune.sparsity": sparsity,
                            "params.train.seed": replicate,
                            "metrics.model/params": n_final,
                            "metrics.model/params_avg": n_avg,
                            "metrics.data/tokens": tokens,
                            "metrics.val/loss": loss * np.exp(rng.normal(0, 0.01)),
                        }
                    )
    return pd.DataFrame(rows)


def test_data_from_the_n_avg_law_pick_journey_and_say_it_is_significant():
    result = compare_laws(sweep("journey"), "chinchilla,journey", folds=5, bootstrap=1000)
    assert result.winner == "journey" and result.significant
    assert result.verdict.startswith("journey predicts better") and "excludes 0" in result.verdict
    low, high = result.interval  # chinchilla's error minus journey's: above 0
    assert 0 < low <= result.difference <= high
    assert result.heldout_error["journey"] < 0.015  # about the 1 % noise put in
    # Seeds of one configuration share a fold: 36 config groups of 72 trials.
    assert result.unit == result.fold_by == "config group"
    assert (result.units, result.n) == (36, 72)
    again = compare_laws(sweep("journey"), "chinchilla,journey", folds=5, bootstrap=1000)
    assert again == result  # the seed fixes the folds and the resamples


def test_data_from_the_final_n_law_pick_chinchilla():
    result = compare_laws(sweep("chinchilla"), ("journey", "chinchilla"), bootstrap=1000)
    assert result.winner == "chinchilla" and result.significant
    assert result.verdict.startswith("chinchilla predicts better")
    assert result.interval[0] > 0  # journey's error minus chinchilla's


def test_dense_runs_alone_cannot_tell_the_laws_apart():
    result = compare_laws(sweep("journey", sparsities=(0.0,)), bootstrap=500)  # N_avg = N
    assert result.winner is None and not result.significant
    assert result.verdict.startswith("cannot tell") and "covers 0" in result.verdict
    assert "predicted every held-out trial alike" in result.verdict


@pytest.mark.parametrize("seed", range(4))
def test_one_law_in_disguise_cannot_tell(seed):
    # One sparsity: N_avg = 2.5 N on every trial, so the two laws are the same law. Fitted
    # on uncentred inputs, L-BFGS ended the two fits at different points of a flat valley
    # and "found" chinchilla better (seed 4 of the sweep: RMSE 0.011 against 0.016).
    result = compare_laws(sweep("journey", sparsities=(0.8,), seed=seed + 2), bootstrap=1000)
    assert result.winner is None, result.verdict
    assert result.verdict.startswith("cannot tell")
    assert abs(result.difference) < 0.01 * min(result.heldout_error.values())


def test_a_difference_inside_the_margin_is_not_called_better():
    result = compare_laws(sweep("journey"), "chinchilla,journey", bootstrap=500, margin=10.0)
    assert result.interval[0] > 0  # the interval does exclude 0 ...
    assert result.winner is None and result.better == "journey"  # ... but not by 10x
    assert "excludes 0 by less than the margin" in result.verdict


def test_five_config_groups_are_too_few_even_when_one_law_fits_far_better():
    df = sweep("journey")
    picks = [(1e6, 0.0, 1e8), (3e7, 0.0, 1e10), (1e7, 0.8, 1e8), (3e7, 0.8, 1e9), (1e6, 0.5, 1e10)]
    keys = df[["params.model.width", "params.prune.sparsity", "metrics.data/tokens"]]
    few = df[[k in picks for k in keys.itertuples(index=False, name=None)]]  # x 2 seeds
    result = compare_laws(few, folds=5, bootstrap=500)
    assert (result.units, result.n) == (5, 10)
    assert result.better == "journey" and result.winner is None
    assert result.heldout_error["chinchilla"] > 2 * result.heldout_error["journey"]
    assert result.verdict.startswith("cannot tell: journey has the lower held-out error")
    assert "5 held-out config groups are too few: a 95 % verdict needs at least 6" in (
        result.verdict
    )


def test_folds_that_leave_too_few_trials_to_fit_cannot_tell():
    df = sweep("journey").iloc[::9]  # 8 trials: two folds of 4 leave 4 to fit 5 parameters
    result = compare_laws(df, folds=2, bootstrap=100)
    assert result.n == 0 and result.winner is None
    assert "no fold could be fitted without its trials" in result.verdict


def test_leave_one_width_out():
    result = compare_laws(sweep("journey"), by="model.width", bootstrap=1000)
    assert result.fold_by == "params.model.width" and result.folds == len(WIDTHS)
    assert result.unit == "config group" and result.winner == "journey"


def test_no_bootstrap_means_no_interval_and_no_verdict():
    result = compare_laws(sweep("journey"), bootstrap=0)
    assert result.better == "journey" and result.winner is None
    assert "no bootstrap resamples" in result.verdict and np.isnan(result.interval[0])


def test_a_law_input_that_never_varies_is_an_error_naming_it():
    df = sweep("journey", budgets=(1e9,))
    with pytest.raises(ConstantInputError, match=r"data/tokens.*1 distinct value") as caught:
        compare_laws(df)
    assert caught.value.field == "metrics.data/tokens" and caught.value.exit_code == 2


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"laws": "journey,power"}, "laws"),
        ({"laws": ["journey"]}, "laws"),
        ({"laws": "journey,journey"}, "laws"),
        ({"folds": 1}, "folds"),
        ({"folds": True}, "folds"),
        ({"bootstrap": -1}, "bootstrap"),
        ({"level": 1.0}, "level"),
        ({"level": True}, "level"),
        ({"margin": -0.1}, "margin"),
    ],
)
def test_bad_options_are_config_errors_naming_the_field(options, field):
    with pytest.raises(ConfigError) as caught:
        compare_laws(sweep("journey", sparsities=(0.0,)), **options)
    assert caught.value.field == field and caught.value.exit_code == 2
