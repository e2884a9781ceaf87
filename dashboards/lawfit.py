"""The numerical core of scaling-law fits: laws as sums of power terms, fit in log space.

A law predicts ``L = sum_k exp(t_k)`` with ``t_k = theta[i_k] - theta[j_k] * log x_k``
(a constant term has no exponent), i.e. ``log L = LSE(t_1, ..., t_K)``: the
parametrisation of Hoffmann et al. (2022). The fit minimises the Huber loss (delta 1e-3)
of ``log L - LSE(...)`` with L-BFGS, started from the best few points of a grid scaled
to the data, and keeps the best converged optimum. The parameters are boxed (``BOUNDS``)
so no start can run off to an overflow; ``flat_parameters`` says which of them the data
leave free at an optimum.

>>> import numpy as np
>>> law = LAWS["power"]
>>> x = np.geomspace(1e3, 1e6, 12)[:, None]
>>> y = 0.5 + 20.0 * x[:, 0] ** -0.3
>>> opt = fit_theta(law, np.log(x), np.log(y))
>>> [round(v, 3) for v in law.coefficients(opt.theta).values()], opt.converged
([0.5, 20.0, 0.3], True)
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.optimize import minimize

__all__ = [
    "BOUNDS",
    "LAWS",
    "Law",
    "Optimum",
    "design",
    "fit_theta",
    "flat_parameters",
    "predict_log",
]

DELTA = 1e-3  # Huber threshold on log-loss residuals, as in Hoffmann et al.
STARTS = 8  # L-BFGS runs, from the best points of the initial grid
_SCREEN_POINTS = 512  # grid points are ranked on at most this many data points
_MULTISTART_POINTS = 2000  # above this, the starts run on a subsample, then one polish
_EXPONENTS = (0.1, 0.3, 0.5, 1.0, 2.0)
_OFFSETS = (-4.0, -2.0, 0.0, 1.5)  # log of a term's size at the mean input, vs. mean loss
_FLOORS = (-3.0, -1.0, -0.3, -0.05)  # log of the constant term vs. the smallest loss
BOUNDS = {"intercept": 300.0, "exponent": 10.0}
"""The box of the fit: |log intercept| <= 300 keeps exp() finite (it overflows past 709),
|exponent| <= 10 is far beyond any scaling law. An optimum on the box is not a fit."""
FLAT = 1e-10  # an eigenvalue of the (normalised) curvature this far below the top is zero
NEGLIGIBLE = 1e-4  # a term whose share of the predicted loss is below this at every point
# moves no prediction past the noise of any real sweep: its parameters are not pinned


@dataclass(frozen=True)
class Law:
    """A law's free parameters and its terms ``(intercept, exponent or None, input)``."""

    name: str
    params: tuple[str, ...]  # theta names: intercepts are logs (e -> E = exp(e))
    names: tuple[str, ...]  # the reported coefficient names
    terms: tuple[tuple[int, int | None, int | None], ...]

    @property
    def n_inputs(self) -> int:
        return sum(k is not None for _, _, k in self.terms)

    @property
    def exponents(self) -> set[int]:
        """Indices of the parameters that are exponents (the others are log intercepts)."""
        return {j for _, j, _ in self.terms if j is not None}

    def bounds(self) -> list[tuple[float, float]]:
        """The ``BOUNDS`` box, one (low, high) per parameter."""
        return [
            (-b, b)
            for i in range(len(self.params))
            for b in [BOUNDS["exponent" if i in self.exponents else "intercept"]]
        ]

    def coefficients(self, theta: np.ndarray) -> dict[str, float]:
        """Reported coefficients: intercepts exponentiated, exponents as they are."""
        return {
            name: float(theta[i] if i in self.exponents else np.exp(theta[i]))
            for i, name in enumerate(self.names)
        }


LAWS: dict[str, Law] = {
    "chinchilla": Law(
        "chinchilla",
        ("e", "a", "alpha", "b", "beta"),
        ("E", "A", "alpha", "B", "beta"),
        ((0, None, None), (1, 2, 0), (3, 4, 1)),
    ),
    "power": Law("power", ("c", "a", "alpha"), ("c", "a", "alpha"), ((0, None, None), (1, 2, 0))),
}
LAWS["journey"] = Law(
    "journey", *(getattr(LAWS["chinchilla"], f) for f in ("params", "names", "terms"))
)


@dataclass(frozen=True)
class Optimum:
    theta: np.ndarray
    objective: float
    converged: bool
    message: str


def design(law: Law, logx: np.ndarray) -> np.ndarray:
    """``Z`` of shape (parameters, points, terms) with ``t = theta @ Z``: each term is
    linear in theta (an intercept minus an exponent times a log input)."""
    z = np.zeros((len(law.params), logx.shape[0], len(law.terms)))
    for col, (i, j, k) in enumerate(law.terms):
        z[i, :, col] = 1.0
        if j is not None and k is not None:
            z[j, :, col] = -logx[:, k]
    return z


def _lse(t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """log-sum-exp over the last axis, and the softmax weights."""
    top = t.max(axis=-1, keepdims=True)
    e = np.exp(t - top)
    total = e.sum(axis=-1, keepdims=True)
    return (top + np.log(total))[..., 0], e / total


def predict_log(law: Law, theta: np.ndarray, logx: np.ndarray) -> np.ndarray:
    """``log L`` predicted at inputs ``log x`` (points x inputs); ``theta`` may be batched."""
    return _lse(np.tensordot(theta, design(law, logx), axes=(-1, 0)))[0]


def _huber(r: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    quad = np.abs(r) <= DELTA
    value = np.where(quad, 0.5 * r * r, DELTA * (np.abs(r) - 0.5 * DELTA))
    return value, np.where(quad, r, DELTA * np.sign(r))


def _objective(theta, z, inverse, logy, w) -> tuple[float, np.ndarray]:
    """Huber loss on log L and its gradient. ``z`` is the design at the *distinct* inputs
    and ``inverse`` maps each point to its input: the law is evaluated once per distinct
    input (a grid sweep's replicates share one), the residuals per point. Exact."""
    pred_u, soft = _lse(np.tensordot(theta, z, axes=(0, 0)))
    h, dh = _huber(logy - pred_u[inverse])
    # Scaled so the objective is O(|r| / delta): L-BFGS's default tolerances then fit it.
    scale = 1.0 / (w.sum() * DELTA * DELTA)
    dpred = np.bincount(inverse, -(w * dh) * scale, minlength=len(pred_u))  # per input
    grad = np.einsum("n,nk,pnk->p", dpred, soft, z)
    return float((w * h).sum() * scale), grad


def _grid(law: Law, logx: np.ndarray, logy: np.ndarray) -> np.ndarray:
    """Starting points scaled to the data, shape (grid points, parameters)."""
    mean_x, mean_y, low_y = logx.mean(axis=0), logy.mean(), logy.min()
    axes: list[list[dict[int, float]]] = []
    for i, j, k in law.terms:
        if j is None or k is None:
            axes.append([{i: low_y + f} for f in _FLOORS])
        else:
            axes.append(
                [{i: a * mean_x[k] + mean_y + o, j: a} for a in _EXPONENTS for o in _OFFSETS]
            )
    combos = list(itertools.product(*axes))
    points = np.zeros((len(combos), len(law.params)))
    for row, combo in enumerate(combos):
        for part in combo:
            for index, value in part.items():
                points[row, index] = value
    return points


def _screen(law: Law, logx, logy, starts: int) -> np.ndarray:
    grid = _grid(law, logx, logy)
    step = max(1, len(logy) // _SCREEN_POINTS)
    sx, sy = logx[::step], logy[::step]
    r = sy - predict_log(law, grid, sx)
    score = _huber(r)[0].sum(axis=1)
    return grid[np.argsort(score, kind="stable")[:starts]]


def _distinct_rows(logx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each row's index among the distinct rows, and those rows (hashing, O(n))."""
    index = pd.MultiIndex.from_arrays([logx[:, k] for k in range(logx.shape[1])])
    codes, uniques = pd.factorize(index)
    distinct = np.array(list(uniques), dtype=float).reshape(len(uniques), logx.shape[1])
    return codes.astype(np.intp), distinct


def fit_theta(
    law: Law,
    logx: np.ndarray,
    logy: np.ndarray,
    weights: np.ndarray | None = None,
    starts: np.ndarray | None = None,
) -> Optimum:
    """Fit ``law`` to ``log y`` at ``log x``; L-BFGS from ``starts`` (default: the grid's
    best ``STARTS`` points). The best converged optimum wins; if none converged, the best
    of all, with ``converged=False``."""
    w = np.ones(len(logy)) if weights is None else np.asarray(weights, dtype=float)
    if starts is None and len(logy) > _MULTISTART_POINTS:
        # Many points: find the basin on an even subsample, then polish on all of them.
        step = len(logy) // _MULTISTART_POINTS + 1
        rough = fit_theta(law, logx[::step], logy[::step], w[::step])
        if np.all(np.isfinite(rough.theta)):
            starts = rough.theta
    inits = _screen(law, logx, logy, STARTS) if starts is None else np.atleast_2d(starts)
    inverse, distinct = _distinct_rows(logx)
    z = design(law, distinct)
    args = (z, inverse, logy, w)
    best: Optimum | None = None
    for theta0 in inits:
        theta0 = np.clip(theta0, *np.array(law.bounds()).T)
        res = minimize(
            _objective, theta0, args=args, jac=True, method="L-BFGS-B", bounds=law.bounds()
        )
        if not np.all(np.isfinite(res.x)) or not np.isfinite(res.fun):
            continue
        opt = Optimum(np.asarray(res.x), float(res.fun), bool(res.success), str(res.message))
        if best is None or (opt.converged, -opt.objective) > (best.converged, -best.objective):
            best = opt
    if best is None:
        nan = np.full(len(law.params), np.nan)
        return Optimum(nan, float("nan"), False, "no start gave a finite fit")
    return best


def flat_parameters(
    law: Law, theta: np.ndarray, logx: np.ndarray, weights: np.ndarray | None = None
) -> np.ndarray:
    """Which parameters lie along a flat direction of the fit at ``theta``: one True per
    parameter that can move without changing any prediction, to first order.

    The curvature of the squared log-loss error is ``J^T W J`` (``J`` the Jacobian of the
    predicted log L); its null space holds the directions the data do not constrain.
    Exponents are measured about the mean log input and the columns are normalised, so
    that only a true degeneracy (an input that takes too few values, two terms the data
    cannot tell apart) counts, not the scale of the inputs. A term that is negligible at
    every point (under ``NEGLIGIBLE`` of the prediction) leaves its parameters free too.

    >>> law, theta = LAWS["power"], np.array([0.0, 1.0, 0.5])  # c + a / x^alpha
    >>> flat_parameters(law, theta, np.log([[10.0], [10.0], [100.0], [100.0]])).tolist()
    [True, True, True]
    >>> flat_parameters(law, theta, np.log([[10.0], [100.0], [1000.0]])).tolist()
    [False, False, False]
    """
    w = np.ones(logx.shape[0]) if weights is None else np.asarray(weights, dtype=float)
    z = design(law, logx)
    soft = _lse(np.tensordot(theta, z, axes=(0, 0)))[1]
    jac = np.einsum("nk,pnk->np", soft, z)
    # theta = change @ phi, phi's intercepts taken at the mean log input: better posed.
    change = np.eye(len(law.params))
    mean = np.average(logx, axis=0, weights=w)
    for i, j, k in law.terms:
        if j is not None and k is not None:
            change[i, j] = mean[k]
    centred = jac @ change
    norms = np.sqrt(np.average(centred**2, axis=0, weights=w))
    norms = np.where(norms > 0, norms, 1.0)
    unit = centred / norms
    values, vectors = np.linalg.eigh(unit.T @ (unit * w[:, None]) / w.sum())
    null = change @ (vectors[:, values <= FLAT * max(float(values.max()), 1e-300)] / norms[:, None])
    null /= np.maximum(np.linalg.norm(null, axis=0), 1e-300)
    free = np.linalg.norm(null, axis=1) > 1e-3  # below: noise of a near-null vector
    for col, (i, j, _) in enumerate(law.terms):
        if soft[:, col].max() < NEGLIGIBLE:
            free[[p for p in (i, j) if p is not None]] = True
    return free
