"""Which of two scaling laws predicts held-out trials better, and whether the data can tell.

Both laws are fitted as in ``scaling`` (Huber loss on log L, L-BFGS) on the same K folds
and scored on the trials each fold's fit did not see: a law's held-out error is the RMSE
of log L over those trials. The difference of the two errors (first law minus second) gets
a paired bootstrap interval: the held-out units are resampled with replacement and both
errors recomputed on the same resample, so what the laws share cancels. The interval is
over the held-out points, with each fold's fit kept fixed: it does not refit.

Folds are drawn over *units*: trials, or config groups when replicates exist (trials that
share every law input, N, N_avg and D; say the seeds of one configuration), so no replicate
of a held-out point is in the fit that predicts it. With ``by``, each value of that column
is one fold instead (leave-one-width-out, leave-one-schedule-out); units stay the same.

Each law is fitted on inputs centred on their mean log (a shift of the coordinates, fixed
for all folds): L-BFGS is not invariant to the shear that an uncentred shift of log N
makes, so two laws that are one law in disguise (N_avg = k N on every trial, one sparsity)
would otherwise end their fits at different points of a flat valley and "differ".

The verdict names the better law only when the interval excludes 0 by more than
``margin`` (default 1 %) of the better law's held-out error: smaller differences are the
numerical noise of fits along directions the data do not pin down, and too small to call
one law better. Otherwise it is "cannot tell", with the reason: the interval covers 0 or
sits inside the margin, no resamples were drawn, or too few units. With m units that all
favour one law a sign test reaches ``level`` only once 2 * 0.5**m <= 1 - level (m >= 6 at
95 %), so with fewer the verdict is "cannot tell" whatever the bootstrap says: a
bootstrap of three points is overconfident.

>>> import numpy as np, pandas as pd
>>> rng = np.random.default_rng(0)
>>> dense = np.geomspace(1e6, 1e9, 40); tokens = np.tile([1e8, 1e9, 1e10, 1e11], 10)
>>> keep = np.tile([1.0, 0.5, 0.25, 1.0, 0.1], 8)  # final density: dense and sparse runs
>>> n_avg = dense * (1 + keep) / 2
>>> loss = 1.7 + 400 / n_avg**0.34 + 410 / tokens**0.28
>>> frame = pd.DataFrame({"metrics.model/params": dense * keep,
...     "metrics.model/params_avg": n_avg, "metrics.data/tokens": tokens,
...     "metrics.val/loss": loss * np.exp(rng.normal(0, 0.01, 40))})
>>> result = compare_laws(frame, ("journey", "chinchilla"), folds=5, bootstrap=500)
>>> result.winner, result.significant, result.fold_by
('journey', True, 'trial')
>>> result.verdict.startswith("journey predicts better")
True
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from numbers import Integral, Real
from typing import Any

import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits

from spx.dashboards.columns import completed, resolve_column
from spx.dashboards.lawfit import LAWS, fit_theta
from spx.dashboards.scaling import INPUTS, TARGET, check_data, heldout_residuals, usable_rows
from spx.errors import ConfigError

__all__ = ["COMPARABLE", "Comparison", "compare_laws"]

COMPARABLE = tuple(sorted(INPUTS))
"""The laws compare-laws can compare: those whose inputs are fixed columns (not ``power``)."""
_CHUNK = 256  # bootstrap resamples drawn at once (memory: chunk x units)


@dataclass(frozen=True)
class Comparison:
    """Two laws' held-out errors on the same folds, their difference and the verdict.

    ``heldout_error`` is per law the RMSE of log L on held-out trials; ``difference`` is
    the first law's minus the second's (negative: the first predicts better), ``interval``
    its ``level`` paired-bootstrap interval (NaN without resamples). ``better`` has the
    lower error (None on a tie), ``significant`` says whether the interval excludes 0 by
    more than ``margin`` times the lower error, with enough units; ``winner`` is
    ``better`` when significant, else None. ``unit`` is what folds and resamples are made
    of, ``"trial"`` or ``"config group"`` (``units`` of them); ``fold_by`` is the same, or
    the ``by`` column; ``n`` counts the trials both laws predicted, of ``usable``.
    """

    laws: tuple[str, str]
    target: str
    heldout_error: dict[str, float]
    difference: float
    interval: tuple[float, float]
    level: float
    margin: float
    better: str | None
    significant: bool
    verdict: str
    folds: int
    fold_by: str
    unit: str
    units: int
    n: int
    usable: int
    bootstrap: int
    seed: int

    @property
    def winner(self) -> str | None:
        """The law that predicts better, when the data can tell; else None."""
        return self.better if self.significant else None

    def to_dict(self) -> dict[str, Any]:
        """Plain data for JSON (tuples as lists, ``winner`` included)."""
        out = asdict(self)
        out["laws"] = list(self.laws)
        out["interval"] = list(self.interval)
        out["winner"] = self.winner
        return out


def compare_laws(
    frame: pd.DataFrame,
    laws: Sequence[str] | str = ("journey", "chinchilla"),
    folds: int = 5,
    bootstrap: int = 2000,
    seed: int = 0,
    *,
    level: float = 0.95,
    margin: float = 0.01,
    by: str | None = None,
    y: str = TARGET,
) -> Comparison:
    """Compare two laws (``COMPARABLE``, or ``"journey,chinchilla"``) on the COMPLETED
    trials of ``frame`` (a ``Sweep.trials_df()``) by ``folds``-fold held-out error.

    Only trials with every column of both laws finite and positive take part, so both are
    scored on the same trials. ``by`` holds out one value of that column per fold instead
    of ``folds`` random folds. Errors (ConfigError, exit 2 from the CLI): an unknown law
    or not two of them, a bad count, level or margin, a column that does not exist
    (NotFoundError), a law input with one distinct value (ConstantInputError, naming it),
    fewer trials than a fit needs. Too few trials to tell is not an error: the verdict
    says "cannot tell".
    Example: ``compare_laws(sw.trials_df(), "journey,chinchilla", folds=5).verdict``
    """
    names = _law_names(laws)
    folds = _count("folds", folds, 2)
    bootstrap = _count("bootstrap", bootstrap, 0)
    seed = _count("seed", seed, 0)
    level = _number("level", level, 0.0, 1.0)
    margin = _number("margin", margin, 0.0, math.inf, closed=True)
    df = completed(frame)
    target = resolve_column(df, y, what="loss column")
    by_col = None if by is None else resolve_column(df, by, what="fold column")
    data, inputs = _usable(df, names, target, by_col)
    columns = list(dict.fromkeys(c for cols in inputs.values() for c in cols))
    logpoints = np.log(data[columns].to_numpy())
    units = np.unique(np.round(logpoints, 6), axis=0, return_inverse=True)[1].reshape(-1)
    unit = "config group" if units.max() + 1 < len(data) else "trial"
    rng = np.random.default_rng(seed)
    fold = _folds(data, units, folds, by_col, rng)
    logy = np.log(data[target].to_numpy())
    # Many tiny L-BFGS solves: BLAS threads only fight each other (as in scaling).
    with threadpool_limits(limits=1, user_api="blas"):
        residuals = {n: _residuals(n, data, inputs[n], logy, fold) for n in names}
    scored = _Scored.of(names, residuals, units)
    interval = scored.interval(bootstrap, level, rng)
    better, significant, verdict = _verdict(names, scored, interval, level, margin, unit)
    return Comparison(
        laws=names,
        target=target,
        heldout_error=scored.errors,
        difference=scored.difference,
        interval=interval,
        level=level,
        margin=margin,
        better=better,
        significant=significant,
        verdict=verdict,
        folds=int(fold.max()) + 1,
        fold_by=by_col or unit,
        unit=unit,
        units=scored.units,
        n=scored.n,
        usable=len(data),
        bootstrap=bootstrap,
        seed=seed,
    )


def _usable(df: pd.DataFrame, names, target: str, by: str | None):
    """The rows usable by both laws, and each law's input columns; checked once, by the
    check of scaling-law fits (an input that never varies, too few rows)."""
    inputs = {
        name: tuple(resolve_column(df, c, what=f"input column of the {name} law") for c in cols)
        for name in names
        for cols in [INPUTS[name]]
    }
    columns = list(dict.fromkeys(c for cols in inputs.values() for c in cols))
    data = usable_rows(df, [*columns, target], [by] if by else [])
    for name in names:
        check_data(LAWS[name], data, inputs[name], target)
    return data, inputs


def _law_names(laws: Sequence[str] | str) -> tuple[str, str]:
    names = [n.strip() for n in laws.split(",")] if isinstance(laws, str) else list(laws)
    for name in names:
        if name not in COMPARABLE:
            raise ConfigError(
                f"compare-laws compares laws with fixed inputs: {', '.join(COMPARABLE)}",
                field="laws",
                value=name,
            )
    if len(names) != 2 or names[0] == names[1]:
        raise ConfigError("name two different laws to compare", field="laws", value=names)
    return names[0], names[1]


def _count(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, Integral) or value < minimum:
        raise ConfigError(f"must be an integer >= {minimum}", field=name, value=value)
    return int(value)


def _number(name: str, value: Any, low: float, high: float, closed: bool = False) -> float:
    """A real number in (low, high), or [low, high) with ``closed``; a boolean is not one."""
    number = float(value) if isinstance(value, Real) and not isinstance(value, bool) else None
    if number is None or not (low <= number < high) or (number == low and not closed):
        where = f"{'[' if closed else '('}{low:g}, {high:g})"
        raise ConfigError(f"must be a number in {where}", field=name, value=value)
    return number


def _folds(data: pd.DataFrame, units: np.ndarray, k: int, by: str | None, rng) -> np.ndarray:
    """A fold number per row: one per value of ``by``, else units shuffled into k folds
    (fewer when there are fewer units: then each unit is its own fold)."""
    if by is not None:
        fold = pd.factorize(data[by], use_na_sentinel=False)[0]  # a missing value: a fold
        if fold.max() < 1:
            raise ConfigError(
                "folds by a column need it to take at least 2 values among the usable trials",
                field=by,
                value=data[by].iloc[0],
            )
        return fold
    n_units = int(units.max()) + 1
    return rng.permutation(np.arange(n_units) % min(k, n_units))[units]


def _residuals(name: str, data, inputs, logy: np.ndarray, fold: np.ndarray) -> np.ndarray:
    law = LAWS[name]
    logx = np.log(data[list(inputs)].to_numpy())
    logx -= logx.mean(axis=0)
    return heldout_residuals(law, logx, logy, fold, fit_theta(law, logx, logy).theta)


@dataclass(frozen=True)
class _Scored:
    """Squared held-out errors summed per unit, over the trials both laws predicted."""

    names: tuple[str, str]
    sse: tuple[np.ndarray, np.ndarray]
    count: np.ndarray

    @classmethod
    def of(cls, names, residuals: dict[str, np.ndarray], units: np.ndarray) -> _Scored:
        a, b = (residuals[n] for n in names)
        ok = np.isfinite(a) & np.isfinite(b)
        codes = pd.factorize(units[ok])[0]
        size = int(codes.max()) + 1 if len(codes) else 0
        sse = tuple(np.bincount(codes, r[ok] ** 2, minlength=size) for r in (a, b))
        return cls(names, (sse[0], sse[1]), np.bincount(codes, minlength=size))

    @property
    def n(self) -> int:
        return int(self.count.sum())

    @property
    def units(self) -> int:
        return len(self.count)

    @property
    def errors(self) -> dict[str, float]:
        n = self.n
        return {
            name: math.sqrt(float(s.sum()) / n) if n else math.nan
            for name, s in zip(self.names, self.sse, strict=True)
        }

    @property
    def difference(self) -> float:
        first, second = self.errors.values()
        return first - second

    @property
    def same_predictions(self) -> bool:
        return bool(np.array_equal(self.sse[0], self.sse[1]))

    def interval(self, rounds: int, level: float, rng) -> tuple[float, float]:
        """The paired percentile interval of the difference over ``rounds`` resamples of
        the units (both laws' errors on the same resample)."""
        if rounds == 0 or self.units == 0:
            return math.nan, math.nan
        draws = []
        for done in range(0, rounds, _CHUNK):
            pick = rng.integers(0, self.units, (min(_CHUNK, rounds - done), self.units))
            n = self.count[pick].sum(axis=1)
            first, second = (np.sqrt(s[pick].sum(axis=1) / n) for s in self.sse)
            draws.append(first - second)
        tail = (1 - level) / 2 * 100
        low, high = np.percentile(np.concatenate(draws), [tail, 100 - tail])
        return float(low), float(high)


def _verdict(names, scored: _Scored, interval, level: float, margin: float, unit: str) -> tuple:
    """(better law or None, significant, the verdict in words)."""
    pct = f"{level * 100:g} %"
    errors, diff = scored.errors, scored.difference
    if scored.n == 0:
        return (
            None,
            False,
            (
                "cannot tell: no fold could be fitted without its trials (a fit needs "
                f"{len(LAWS[names[0]].params) + 1} trials outside each fold); add trials, or "
                "use fewer folds"
            ),
        )
    better = names[0] if diff < 0 else names[1] if diff > 0 else None
    other = names[1] if better == names[0] else names[0]
    lower = (
        f"{better} has the lower held-out error ({errors[better]:.4g} against "
        f"{errors[other]:.4g} for {other})"
        if better
        else f"the held-out errors are equal ({errors[names[0]]:.4g})"
    )
    low, high = interval
    needed = math.ceil(math.log2(2 / (1 - level)))
    span = f"the {pct} interval of the difference [{low:.3g}, {high:.3g}]"
    tolerance = margin * min(errors.values())
    if low != low:
        why = "no bootstrap resamples were drawn (bootstrap 0), so there is no interval"
    elif scored.units < needed:
        why = (
            f"{scored.units} held-out {unit}s are too few: a {pct} verdict needs at least "
            f"{needed}, even if all favour one law"
        )
    elif low <= 0 <= high:
        why = f"{span} covers 0"
        if scored.same_predictions:
            why += " (the two laws predicted every held-out trial alike)"
    elif not (low > tolerance or high < -tolerance):  # one side of 0, inside the margin
        why = (
            f"{span} excludes 0 by less than the margin ({margin:g} of the lower error: "
            f"{tolerance:.3g}), too little to call one law better"
        )
    else:
        assert better is not None  # an interval that excludes 0 has a nonzero difference
        return (
            better,
            True,
            (
                f"{better} predicts better: held-out RMSE of log L {errors[better]:.4g} against "
                f"{errors[other]:.4g} for {other}; {span} excludes 0"
            ),
        )
    return better, False, f"cannot tell: {lower}, but {why}"
