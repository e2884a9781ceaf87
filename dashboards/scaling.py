"""Scaling-law fits over a trials DataFrame: Chinchilla, Journey-Matters (N_avg), power.

- ``chinchilla``: L = E + A / N^alpha + B / D^beta, N the final nonzero parameter count
  (``metrics.model/params``), D the tokens seen (``metrics.data/tokens``).
- ``journey``: the same form with N_avg (``metrics.model/params_avg``), the parameter
  count averaged over training, so sparse and dense runs share one law (Jin et al. 2025).
- ``power``: L = c + a * x^(-alpha) on any one column ``x``.

Fitting follows the literature (see ``lawfit``): Huber loss on log L, L-BFGS from a grid.
Coefficients get bootstrap intervals (95 %, percentile), the fit a cross-validated
held-out error (RMSE of log L on points the fit did not see) so two laws can be compared.

A fit says when it cannot tell: an input that takes one value is an error
(ConstantInputError); a coefficient the data do not pin down (a flat direction of the fit,
an optimum on the parameter box, or a bootstrap interval spanning more than 10x) has
``identifiable[name] = False``; a fit worse than the mean (R² < 0), without a held-out
error, or whose optimizer did not converge is not ``reliable``, and ``warnings`` says why.

>>> import numpy as np, pandas as pd
>>> x = np.geomspace(1e3, 1e6, 10)
>>> df = pd.DataFrame({"metrics.flops": x, "metrics.val/loss": 0.5 + 20.0 * x**-0.3})
>>> fit = fit_scaling_law(df, law="power", x="flops", bootstrap=20)
>>> {k: round(v, 3) for k, v in fit.coefficients.items()}, fit.n, fit.converged
({'c': 0.5, 'a': 20.0, 'alpha': 0.3}, 10, True)
>>> fit.identifiable, fit.reliable, fit.warnings
({'c': True, 'a': True, 'alpha': True}, True, ())
>>> round(float(fit.predict({"metrics.flops": [1e4]})[0]), 4)
1.7619
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from functools import partial
from typing import Any, Literal, overload

import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits

from spx.dashboards.columns import completed, resolve_column
from spx.dashboards.lawfit import BOUNDS, LAWS, Law, fit_theta, flat_parameters, predict_log
from spx.errors import ConfigError, ConstantInputError

__all__ = [
    "ExtrapolationWarning",
    "ScalingFit",
    "check_data",
    "fit_scaling_law",
    "heldout_residuals",
    "usable_rows",
]

LawName = Literal["journey", "chinchilla", "power"]
INPUTS = {
    "chinchilla": ("metrics.model/params", "metrics.data/tokens"),
    "journey": ("metrics.model/params_avg", "metrics.data/tokens"),
}
TARGET = "metrics.val/loss"
WIDE = 10.0  # a bootstrap interval whose ends differ by more than this factor pins nothing


class ExtrapolationWarning(UserWarning):
    """A prediction was asked outside the range of inputs the law was fitted on."""


@dataclass(frozen=True)
class ScalingFit:
    """One fitted law: coefficients with 95 % bootstrap intervals and how well it fits.

    ``r2`` is on log L (what the fit minimises); ``heldout_error`` is the RMSE of log L on
    held-out points (NaN when too few points to hold any out); ``converged`` is L-BFGS's
    verdict on the best start, ``message`` its reason. ``identifiable`` says, per
    coefficient, whether the data pin it down; ``warnings`` lists, in words, every reason
    not to trust the fit (empty for a sound one).
    """

    law: str
    inputs: tuple[str, ...]
    target: str
    coefficients: dict[str, float]
    intervals: dict[str, tuple[float, float]]
    r2: float
    heldout_error: float
    n: int
    converged: bool
    message: str
    group: Any = None
    bootstrap_converged: int = 0
    ranges: dict[str, tuple[float, float]] = field(default_factory=dict)
    identifiable: dict[str, bool] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()
    theta: tuple[float, ...] = field(default=(), repr=False)
    samples: tuple[tuple[float, ...], ...] = field(default=(), repr=False)
    """The converged bootstrap fits' parameters (for bands)."""

    @property
    def reliable(self) -> bool:
        """Whether the curve may be read as a law: the optimizer converged, the fit beats
        the mean (R² >= 0) and it has a held-out error. Identifiability is separate: an
        unidentified coefficient can sit in a curve that predicts well inside the data."""
        return self.converged and self.r2 >= 0 and math.isfinite(self.heldout_error)

    def predict(self, data: pd.DataFrame | Mapping[str, Any]) -> np.ndarray:
        """Predicted loss at the inputs (columns named as ``inputs``); warns with an
        ExtrapolationWarning when any value leaves the fitted range.

        Example: ``fit.predict({"metrics.model/params_avg": [1e8], "metrics.data/tokens": [2e9]})``
        """
        missing = [c for c in self.inputs if c not in data]
        if missing:
            raise ConfigError("predict needs every input of the law", field="data", value=missing)
        cols = [np.asarray(data[c], dtype=float).reshape(-1) for c in self.inputs]
        for name, values in zip(self.inputs, cols, strict=True):
            low, high = self.ranges[name]
            if np.any(values < low) or np.any(values > high):
                warnings.warn(
                    f"{name}: predicting outside the fitted range [{low:.4g}, {high:.4g}]",
                    ExtrapolationWarning,
                    stacklevel=2,
                )
        logx = np.log(np.column_stack(cols))
        return np.exp(predict_log(LAWS[self.law], np.array(self.theta), logx))

    def band(
        self, data: pd.DataFrame | Mapping[str, Any], level: float = 0.95
    ) -> tuple[np.ndarray, np.ndarray]:
        """The pointwise ``level`` band of the prediction over the bootstrap fits (low,
        high); both equal the prediction when there are fewer than two bootstrap fits."""
        cols = [np.asarray(data[c], dtype=float).reshape(-1) for c in self.inputs]
        logx = np.log(np.column_stack(cols))
        if len(self.samples) < 2:
            mid = np.exp(predict_log(LAWS[self.law], np.array(self.theta), logx))
            return mid, mid
        preds = np.exp(
            np.stack([predict_log(LAWS[self.law], np.array(t), logx) for t in self.samples])
        )
        tail = (1 - level) / 2 * 100
        return np.percentile(preds, tail, axis=0), np.percentile(preds, 100 - tail, axis=0)

    def to_dict(self) -> dict[str, Any]:
        """Plain data for JSON (intervals as [low, high] lists)."""
        out = asdict(self)
        out.pop("theta")
        out.pop("samples")
        out["intervals"] = {k: list(v) for k, v in self.intervals.items()}
        out["ranges"] = {k: list(v) for k, v in self.ranges.items()}
        out["warnings"] = list(self.warnings)
        out["reliable"] = self.reliable
        return out


@overload
def fit_scaling_law(
    df: pd.DataFrame,
    law: LawName = ...,
    group_by: None = None,
    *,
    x: str | None = ...,
    y: str = ...,
    bootstrap: int = ...,
    holdout: float | str = ...,
    seed: int = ...,
) -> ScalingFit: ...


@overload
def fit_scaling_law(
    df: pd.DataFrame,
    law: LawName = ...,
    group_by: str = ...,
    *,
    x: str | None = ...,
    y: str = ...,
    bootstrap: int = ...,
    holdout: float | str = ...,
    seed: int = ...,
) -> dict[Any, ScalingFit]: ...


@overload
def fit_scaling_law(
    df: pd.DataFrame,
    law: LawName = ...,
    group_by: str | None = ...,
    *,
    x: str | None = ...,
    y: str = ...,
    bootstrap: int = ...,
    holdout: float | str = ...,
    seed: int = ...,
) -> ScalingFit | dict[Any, ScalingFit]: ...


def fit_scaling_law(
    df: pd.DataFrame,
    law: LawName = "journey",
    group_by: str | None = None,
    *,
    x: str | None = None,
    y: str = TARGET,
    bootstrap: int = 200,
    holdout: float | str = 0.2,
    seed: int = 0,
) -> ScalingFit | dict[Any, ScalingFit]:
    """Fit ``law`` to the COMPLETED trials of ``df`` (a ``Sweep.trials_df()``).

    ``x`` is the input of the power law; ``y`` the loss column. ``group_by`` fits one law
    per value of that column and returns ``{value: fit}``. ``holdout`` is the fraction
    held out per cross-validation fold (0.2: five folds), or a column name for
    leave-one-group-out. Columns may be named short (``val/loss``, ``prune.method``).
    Errors: unknown column (NotFoundError listing them), too few points or no completed
    trials (ConfigError), an input of the law with one distinct value (ConstantInputError,
    a ConfigError). A fit the data cannot support is returned, flagged: see ``identifiable``,
    ``reliable`` and ``warnings``. Example: ``fit_scaling_law(sw.trials_df(), law="journey")``
    """
    spec = _law(law)
    df = completed(df)
    inputs = _inputs(df, law, x)
    target = resolve_column(df, y, what="loss column")
    groups = None if group_by is None else resolve_column(df, group_by, what="group column")
    folds_by = None
    if isinstance(holdout, str):
        folds_by = resolve_column(df, holdout, what="holdout column")
    elif not 0.0 < holdout < 1.0:
        raise ConfigError("a fraction in (0, 1) or a column", field="holdout", value=holdout)
    if bootstrap < 0:
        raise ConfigError("bootstrap must be >= 0", field="bootstrap", value=bootstrap)
    data = usable_rows(df, [*inputs, target], [c for c in (groups, folds_by) if c])
    fit = partial(
        _fit_one, spec, bootstrap=bootstrap, holdout=holdout, folds_by=folds_by, seed=seed
    )
    # Thousands of tiny L-BFGS solves: BLAS threads only fight each other (10x slower on
    # a busy machine), so they are held to one for the whole fit.
    with threadpool_limits(limits=1, user_api="blas"):
        if groups is None:
            return fit(data, inputs, target, None)
        return {
            value: fit(part, inputs, target, value)
            for value, part in data.groupby(groups, sort=True)
        }


def _law(law: str) -> Law:
    if law not in LAWS:
        raise ConfigError(f"unknown law; choose one of {', '.join(sorted(LAWS))}", value=law)
    return LAWS[law]


def _inputs(df: pd.DataFrame, law: str, x: str | None) -> tuple[str, ...]:
    if law == "power":
        if x is None:
            raise ConfigError("the power law needs an input column", field="x", value=None)
        return (resolve_column(df, x, what="input column"),)
    if x is not None:
        raise ConfigError(f"the {law} law takes N and D, not an input column", field="x", value=x)
    return tuple(resolve_column(df, c, what=f"input column of the {law} law") for c in INPUTS[law])


def usable_rows(df: pd.DataFrame, numeric: list[str], keys: list[str]) -> pd.DataFrame:
    """The rows whose ``numeric`` columns are finite and positive (logs are taken of them),
    those columns as floats, beside the ``keys`` columns as they are."""
    values = df[numeric].apply(pd.to_numeric, errors="coerce").astype(float)
    ok = np.isfinite(values).all(axis=1) & (values > 0).all(axis=1)
    return pd.concat([values[ok], df.loc[ok, keys]], axis=1)


def _fit_one(
    law: Law,
    data: pd.DataFrame,
    inputs: tuple[str, ...],
    target: str,
    group: Any,
    *,
    bootstrap: int,
    holdout: float | str,
    folds_by: str | None,
    seed: int,
) -> ScalingFit:
    need = len(law.params) + 1
    check_data(law, data, inputs, target, group)
    logx = np.log(data[list(inputs)].to_numpy())
    logy = np.log(data[target].to_numpy())
    best = fit_theta(law, logx, logy)
    rng = np.random.default_rng(seed)
    samples = _bootstrap(law, logx, logy, best.theta, bootstrap, rng)
    folds = _folds(data, holdout, folds_by, rng)
    intervals = _intervals(law, samples)
    free = _unidentified(law, best.theta, logx, intervals)
    r2 = _r2(logy, predict_log(law, best.theta, logx))
    heldout = _heldout(law, logx, logy, folds, best.theta)
    return ScalingFit(
        law=law.name,
        inputs=inputs,
        target=target,
        coefficients=law.coefficients(best.theta),
        intervals=intervals,
        r2=r2,
        heldout_error=heldout,
        n=len(data),
        converged=best.converged,
        message=best.message,
        group=group,
        bootstrap_converged=len(samples),
        ranges={c: (float(data[c].min()), float(data[c].max())) for c in inputs},
        identifiable={name: name not in free for name in law.names},
        warnings=_warnings(best.converged, best.message, r2, heldout, free, need, len(data)),
        theta=tuple(float(v) for v in best.theta),
        samples=tuple(tuple(float(v) for v in t) for t in samples),
    )


def check_data(law: Law, data: pd.DataFrame, inputs, target: str, group: Any = None) -> None:
    """Enough rows for the law's parameters, and every input taking more than one value."""
    need = len(law.params) + 1
    where = "" if group is None else f" in group {group!r}"
    for column in inputs:  # first: more trials at that one value would not help
        distinct = data[column].unique()
        if len(data) > 1 and len(distinct) < 2:
            raise ConstantInputError(
                f"the {law.name} law needs {column} to vary, but it has 1 distinct value "
                f"over the {len(data)} usable trials{where}; sweep it, or fit the power law "
                "in one column that varies",
                field=column,
                value=float(distinct[0]),
            )
    if len(data) < need:
        raise ConfigError(
            f"the {law.name} law has {need - 1} free parameters and needs at least {need} "
            f"completed trials with finite, positive {', '.join((*inputs, target))}{where}",
            value=f"{len(data)} usable",
        )


def _unidentified(law: Law, theta: np.ndarray, logx, intervals) -> dict[str, str]:
    """The coefficients the data do not pin down, each with the reason."""
    if not np.all(np.isfinite(theta)):
        return {name: "no fit" for name in law.names}
    free: dict[str, str] = {}
    flat = flat_parameters(law, theta, logx)
    for i, name in enumerate(law.names):
        bound = BOUNDS["exponent" if i in law.exponents else "intercept"]
        low, high = intervals[name]
        if flat[i]:
            free[name] = "the fit is flat along it: it can move without changing any prediction"
        elif abs(theta[i]) >= bound * (1 - 1e-9):
            free[name] = f"the optimum sits on the parameter bound ({bound:g} in log space)"
        elif low == low and (
            low * high <= 0 or max(abs(low), abs(high)) > WIDE * min(abs(low), abs(high))
        ):
            free[name] = f"its bootstrap interval [{low:.3g}, {high:.3g}] spans over {WIDE:g}x"
    return free


def _warnings(converged, message, r2, heldout, free, need, n) -> tuple[str, ...]:
    """Every reason not to read the fit as a law, in words."""
    out = []
    if not converged:
        out.append(f"the optimizer did not converge: {message}")
    if r2 != r2:
        out.append("R² is undefined: the loss takes a single value, or nothing was fitted")
    elif r2 < 0:
        out.append(f"R² = {r2:.3g} < 0: the law fits worse than the mean of log L")
    if heldout != heldout:
        out.append(
            "the held-out error is undefined: the folds could not be fitted without their "
            f"points (a fit needs {need} trials; n = {n}); add trials or hold out by a column"
        )
    out += [f"{name} is not identifiable: {why}" for name, why in free.items()]
    return tuple(out)


def _bootstrap(law, logx, logy, theta, rounds: int, rng) -> list[np.ndarray]:
    """Refits on resampled points (as multinomial weights), warm-started at the optimum;
    only converged refits count."""
    out = []
    n = len(logy)
    for _ in range(rounds):
        weights = np.bincount(rng.integers(0, n, n), minlength=n).astype(float)
        opt = fit_theta(law, logx, logy, weights=weights, starts=theta)
        if opt.converged:
            out.append(opt.theta)
    return out


def _intervals(law: Law, samples: list[np.ndarray]) -> dict[str, tuple[float, float]]:
    if len(samples) < 2:
        return {name: (math.nan, math.nan) for name in law.names}
    coefs = pd.DataFrame([law.coefficients(s) for s in samples])
    low, high = coefs.quantile(0.025), coefs.quantile(0.975)
    return {name: (float(low[name]), float(high[name])) for name in law.names}


def _folds(data: pd.DataFrame, holdout: float | str, folds_by: str | None, rng) -> np.ndarray:
    """A fold number per row: by the values of ``folds_by``, else shuffled into 1/holdout."""
    if folds_by is not None:
        return pd.factorize(data[folds_by])[0]
    k = max(2, round(1.0 / float(holdout)))
    return rng.permutation(np.arange(len(data)) % k)


def heldout_residuals(
    law: Law, logx: np.ndarray, logy: np.ndarray, folds: np.ndarray, start: np.ndarray
) -> np.ndarray:
    """Per point, log L minus its prediction by the fit on the other folds; NaN where that
    fit had too few points (fewer than the law's parameters + 1). Each fold's fit starts
    from ``start`` (the full fit's optimum): one L-BFGS run per fold, not a multi-start."""
    need = len(law.params) + 1
    out = np.full(len(logy), np.nan)
    for fold in np.unique(folds):
        test = folds == fold
        if (~test).sum() < need:
            continue
        opt = fit_theta(law, logx[~test], logy[~test], starts=start)
        if not np.all(np.isfinite(opt.theta)):  # that start failed here: search afresh
            opt = fit_theta(law, logx[~test], logy[~test])
        out[test] = logy[test] - predict_log(law, opt.theta, logx[test])
    return out


def _heldout(law: Law, logx, logy, folds: np.ndarray, start: np.ndarray) -> float:
    """RMSE of log L over every point of a fold that had enough points outside it to fit
    (NaN when none had; NaN too when such a fold's fit failed)."""
    errors = heldout_residuals(law, logx, logy, folds, start)
    _, which, sizes = np.unique(folds, return_inverse=True, return_counts=True)
    fitted = len(folds) - sizes[which.reshape(-1)] >= len(law.params) + 1
    return float(np.sqrt(np.mean(errors[fitted] ** 2))) if fitted.any() else math.nan


def _r2(logy: np.ndarray, pred: np.ndarray) -> float:
    total = float(((logy - logy.mean()) ** 2).sum())
    return math.nan if total == 0 else 1.0 - float(((logy - pred) ** 2).sum()) / total
