"""Scaling-law fits on data generated from known laws (pure math on DataFrames)."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

from spx.dashboards.plots import fit_band_plot
from spx.dashboards.scaling import ExtrapolationWarning, fit_scaling_law
from spx.errors import ConfigError, ConstantInputError, NotFoundError

TRUE = {"E": 1.69, "A": 406.4, "alpha": 0.34, "B": 410.7, "beta": 0.28}


def journey_data(n: int = 60, seed: int = 1, noise: float = 0.01) -> pd.DataFrame:
    """Dense and sparse runs whose loss follows the law in N_avg (not in final N)."""
    rng = np.random.default_rng(seed)
    dense = np.exp(rng.uniform(np.log(1e6), np.log(1e9), n))
    tokens = np.exp(rng.uniform(np.log(1e8), np.log(1e11), n))
    sparsity = np.where(rng.random(n) < 0.5, rng.choice([0.5, 0.75, 0.9], n), 0.0)
    # The 0.25 -> 0.75 cubic schedule's closed form (Zhu & Gupta 2017; Jin et al., ICLR
    # 2025), N_np = 0.
    n_avg = dense * (0.25 + 0.5 * (1 - 0.75 * sparsity) + 0.25 * (1 - sparsity))
    loss = TRUE["E"] + TRUE["A"] / n_avg ** TRUE["alpha"] + TRUE["B"] / tokens ** TRUE["beta"]
    return pd.DataFrame(
        {
            "status": "COMPLETED",
            "params.prune.sparsity": sparsity,
            "metrics.model/params": dense * (1 - sparsity),
            "metrics.model/params_avg": n_avg,
            "metrics.data/tokens": tokens,
            "metrics.val/loss": loss * np.exp(rng.normal(0, noise, n)),
        }
    )


def test_known_coefficients_are_recovered_within_their_intervals():
    fit = fit_scaling_law(journey_data(), law="journey", bootstrap=200)
    assert fit.converged and fit.n == 60 and fit.bootstrap_converged > 150
    for name, true in TRUE.items():
        low, high = fit.intervals[name]
        assert low <= true <= high, (name, true, low, high)
        assert low <= fit.coefficients[name] <= high
    assert fit.r2 > 0.99


def test_journey_beats_chinchilla_on_held_out_points_of_a_mixed_set():
    df = journey_data()
    journey = fit_scaling_law(df, law="journey", bootstrap=0)
    chinchilla = fit_scaling_law(df, law="chinchilla", bootstrap=0)
    assert journey.heldout_error < chinchilla.heldout_error / 3
    assert journey.heldout_error < 0.02  # about the 1 % noise put in


def test_power_law_and_leave_one_group_out():
    x = np.geomspace(1e3, 1e6, 12)
    df = pd.DataFrame(
        {"metrics.flops": x, "metrics.val/loss": 0.5 + 20.0 * x**-0.3, "g": np.arange(12) % 3}
    )
    fit = fit_scaling_law(df, law="power", x="flops", bootstrap=20, holdout="g")
    assert fit.coefficients == pytest.approx({"c": 0.5, "a": 20.0, "alpha": 0.3}, rel=1e-3)
    assert fit.heldout_error < 1e-3


def test_group_by_fits_one_law_per_group():
    df = journey_data(n=80)
    df["params.prune.method"] = np.where(df["params.prune.sparsity"] > 0, "magnitude", "none")
    fits = fit_scaling_law(df, law="journey", group_by="prune.method", bootstrap=0)
    assert sorted(fits) == ["magnitude", "none"]
    assert all(f.group == g and f.converged for g, f in fits.items())


def test_predicting_outside_the_fitted_range_warns():
    fit = fit_scaling_law(journey_data(), law="journey", bootstrap=0)
    inside = {"metrics.model/params_avg": [1e7], "metrics.data/tokens": [1e9]}
    truth = TRUE["E"] + TRUE["A"] / 1e7 ** TRUE["alpha"] + TRUE["B"] / 1e9 ** TRUE["beta"]
    assert fit.predict(inside)[0] == pytest.approx(truth, rel=0.02)
    with pytest.warns(ExtrapolationWarning, match="outside the fitted range"):
        fit.predict({"metrics.model/params_avg": [1e12], "metrics.data/tokens": [1e9]})


def test_an_unknown_column_lists_the_available_ones():
    with pytest.raises(NotFoundError, match="no input column 'nope'.*metrics.data/tokens"):
        fit_scaling_law(journey_data(), law="power", x="nope")


def test_too_few_points_says_how_many_are_needed():
    df = journey_data().head(5)
    with pytest.raises(ConfigError, match="5 free parameters and needs at least 6"):
        fit_scaling_law(df, law="journey")


def test_no_completed_trials_is_a_config_error():
    df = journey_data().assign(status="FAILED")
    with pytest.raises(ConfigError, match="no completed trials"):
        fit_scaling_law(df, law="chinchilla")


def test_bad_law_and_holdout_are_config_errors():
    with pytest.raises(ConfigError, match="unknown law"):
        fit_scaling_law(journey_data(), law="kaplan")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="holdout"):
        fit_scaling_law(journey_data(), law="journey", holdout=1.5)


# Fits that say when they cannot tell. Small literal sweeps: N_avg and tokens on a grid.
GRID_N = [1e4, 3e4, 1e5, 3e5, 1e6]
GRID_D = [1e7, 1e8, 1e9, 1e10]  # narrower, at 1 % noise, leaves E and B unpinned


def grid_trials(tokens: list[float], noise: float = 0.01) -> pd.DataFrame:
    """Every N_avg of GRID_N at every token budget, loss from the TRUE law, 1 % noise."""
    rng = np.random.default_rng(3)
    n_avg, d = (a.ravel() for a in np.meshgrid(GRID_N, tokens))
    loss = TRUE["E"] + TRUE["A"] / n_avg ** TRUE["alpha"] + TRUE["B"] / d ** TRUE["beta"]
    return pd.DataFrame(
        {
            "status": "COMPLETED",
            "metrics.model/params_avg": n_avg,
            "metrics.data/tokens": d,
            "metrics.val/loss": loss * np.exp(rng.normal(0, noise, len(d))),
        }
    )


# The loss does not follow the law at all: the old fit drew it with R² -0.37, converged
# "yes", and numpy printed "overflow encountered in exp".
NOISE = pd.DataFrame(
    {
        "status": "COMPLETED",
        "metrics.model/params_avg": [72500.0, 56400, 86100, 21100, 91000, 68100, 93200, 12700],
        "metrics.data/tokens": [1e7, 2e7] * 4,
        "metrics.val/loss": [0.23, 0.34, 0.40, 0.21, 0.39, 0.38, 0.15, 0.28],
    }
)


def test_a_law_input_that_never_varies_is_an_error_naming_it():
    df = grid_trials(tokens=[1e8, 1e8])  # two seeds at one budget: 10 trials
    with pytest.raises(ConstantInputError, match=r"data/tokens.*1 distinct value") as caught:
        fit_scaling_law(df, law="journey")
    assert isinstance(caught.value, ConfigError) and caught.value.exit_code == 2
    assert caught.value.field == "metrics.data/tokens" and caught.value.value == 1e8


def test_a_well_posed_fit_pins_every_coefficient():
    fit = fit_scaling_law(grid_trials(GRID_D), law="journey", bootstrap=100)
    assert fit.converged and fit.r2 > 0.9 and fit.reliable
    assert fit.identifiable == dict.fromkeys(TRUE, True)
    assert fit.warnings == ()


def test_a_coefficient_whose_bootstrap_interval_spans_over_10x_is_not_identifiable():
    # Four budgets over 1.5 decades at 1 % noise: beta is pinned, E and B trade off.
    fit = fit_scaling_law(grid_trials([1e7, 3e7, 1e8, 3e8]), law="journey", bootstrap=100)
    assert fit.converged and fit.r2 > 0.99
    low, high = fit.intervals["B"]
    assert high > 10 * low and fit.identifiable["B"] is False
    assert fit.identifiable["alpha"] and fit.identifiable["beta"]
    assert any(w.startswith("B is not identifiable: its bootstrap") for w in fit.warnings)


def test_two_token_budgets_cannot_pin_the_token_term():
    # E + B / D^beta at two values of D: three unknowns, two equations (a flat direction).
    fit = fit_scaling_law(grid_trials([1e7, 1e8]), law="journey", bootstrap=50)
    assert fit.converged  # the optimizer did converge: reported beside, not instead
    assert fit.identifiable == {"E": False, "A": True, "alpha": True, "B": False, "beta": False}
    assert any(w.startswith("beta is not identifiable") for w in fit.warnings)
    assert fit.to_dict()["identifiable"]["B"] is False


def test_a_fit_worse_than_the_mean_warns_in_words_and_numpy_stays_quiet():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fit = fit_scaling_law(NOISE, law="journey")
    assert [str(w.message) for w in caught] == []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        plot = fit_band_plot(NOISE, fit)
    assert [str(w.message) for w in caught] == []
    assert fit.r2 < 0 and not fit.reliable
    assert any(w.startswith("R² = ") and "worse than the mean" in w for w in fit.warnings)
    assert not any(fit.identifiable.values())
    assert plot is not None and plot.title.startswith("WARNING, unreliable fit (R² -")
    assert {s.name for s in plot.series if s.mode == "lines"} == {
        "unreliable fit D=1e+07",
        "unreliable fit D=2e+07",
    }


def test_too_few_trials_to_hold_any_out_says_so():
    fit = fit_scaling_law(grid_trials([1e7, 1e8]).iloc[[0, 1, 2, 5, 6, 9]], law="journey")
    assert fit.heldout_error != fit.heldout_error and not fit.reliable
    assert any("held-out error is undefined" in w for w in fit.warnings)
