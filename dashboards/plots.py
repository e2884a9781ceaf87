"""The report's plots as plain data, drawn by plotly (HTML) or matplotlib (PNG).

Each ``*_plot`` function turns trials and metric history into a :class:`Plot` (series of
x/y points, optionally with a band), or None when the sweep has nothing to show for it.
``to_plotly`` draws one for the HTML report; ``to_png`` draws the same data with
matplotlib for papers and for the MLflow parent run.

>>> import pandas as pd
>>> df = pd.DataFrame({"status": ["COMPLETED"] * 3, "params.prune.method": ["a", "a", "b"],
...     "metrics.model/sparsity": [0.5, 0.0, 0.5], "metrics.val/acc": [0.8, 0.9, 0.7]})
>>> p = accuracy_vs_sparsity_plot(df)
>>> [(s.name, s.x, s.y) for s in p.series]
[('a', [0.0, 0.5], [0.9, 0.8]), ('b', [0.5], [0.7])]
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from spx.dashboards.pareto import pareto_front

__all__ = [
    "Plot",
    "Series",
    "accuracy_vs_sparsity_plot",
    "comm_plot",
    "fit_band_plot",
    "pareto_plot",
    "schedules_plot",
    "to_plotly",
    "to_png",
]


@dataclass
class Series:
    name: str
    x: list[float]
    y: list[float]
    mode: str = "lines+markers"  # lines | markers | lines+markers
    low: list[float] | None = None
    high: list[float] | None = None


@dataclass
class Plot:
    key: str  # file stem of the PNG
    title: str
    xlabel: str
    ylabel: str
    series: list[Series] = field(default_factory=list)
    logx: bool = False
    logy: bool = False


def _done(trials: pd.DataFrame) -> pd.DataFrame:
    return trials[trials["status"] == "COMPLETED"] if len(trials) else trials


def _floats(values: Any) -> list[float]:
    return [float(v) for v in values]


def accuracy_vs_sparsity_plot(trials: pd.DataFrame) -> Plot | None:
    x, y, by = "metrics.model/sparsity", "metrics.val/acc", "params.prune.method"
    done = _done(trials)
    if done.empty or not {x, y, by} <= set(done.columns):
        return None
    plot = Plot(
        "accuracy_vs_sparsity", "Accuracy vs. achieved sparsity, per method", "sparsity", "val/acc"
    )
    for method, rows in done.sort_values(x).groupby(by, sort=True):
        plot.series.append(Series(str(method), _floats(rows[x]), _floats(rows[y])))
    return plot


def schedules_plot(history: pd.DataFrame) -> Plot | None:
    if history.empty:
        return None
    plot = Plot(
        "schedules", "Realized sparsity schedules (model/sparsity per step)", "step", "sparsity"
    )
    for trial, rows in history.sort_values("step").groupby("trial", sort=True):
        plot.series.append(Series(f"trial {trial}", _floats(rows["step"]), _floats(rows["value"])))
    return plot


def fit_band_plot(trials: pd.DataFrame, fit: Any, max_budgets: int = 4) -> Plot | None:
    """Observed loss vs. the law's first input with the fitted curve and its 95 % bootstrap
    band: one curve per token budget for the two-input laws (journey, chinchilla), one for
    the power law. ``fit`` may be a list of fits (one per group), drawn on one plot.
    A fit that is not ``reliable`` (R² < 0, no held-out error, not converged) is drawn
    under a WARNING title, its curve named "unreliable fit", never as a plain curve."""
    fits = [f for f in (fit if isinstance(fit, list) else [fit]) if f is not None]
    if not fits:
        return None
    first = fits[0]
    x_col = first.inputs[0]
    done = _done(trials).dropna(subset=[*first.inputs, first.target])
    if done.empty:
        return None
    reasons = sorted({why for f in fits for why in _unreliable(f)})
    warning = f"WARNING, unreliable fit ({', '.join(reasons)}): " if reasons else ""
    plot = Plot(
        "scaling_fit",
        f"{warning}{first.law} law: {first.target.removeprefix('metrics.')} vs. "
        f"{x_col.removeprefix('metrics.')} (band: 95 % bootstrap)",
        x_col.removeprefix("metrics."),
        first.target.removeprefix("metrics."),
        logx=True,
        logy=True,
    )
    grid = np.geomspace(done[x_col].min(), done[x_col].max(), 40)
    budgets: list[Any] = [None]
    if len(first.inputs) == 2:
        budgets = sorted(done[first.inputs[1]].unique())
        if len(budgets) > max_budgets:
            picks = np.linspace(0, len(budgets) - 1, max_budgets).astype(int)
            budgets = [budgets[i] for i in picks]
    for budget in budgets:
        rows, label = done, ""
        data: dict[str, Any] = {x_col: grid}
        if budget is not None:
            d_col = first.inputs[1]
            rows, label = done[done[d_col] == budget], f"D={budget:.3g}"
            data[d_col] = np.full_like(grid, budget)
        for f in fits:
            lo, hi = f.band(data)
            kind = "fit" if f.reliable else "unreliable fit"
            name = " ".join(x for x in (kind, "" if f.group is None else str(f.group), label) if x)
            curve = Series(name, _floats(grid), _floats(f.predict(data)), "lines")
            curve.low, curve.high = _floats(lo), _floats(hi)
            plot.series.append(curve)
        points = Series(label or "trials", _floats(rows[x_col]), _floats(rows[first.target]))
        points.mode = "markers"
        plot.series.append(points)
    return plot


def _unreliable(fit: Any) -> list[str]:
    """Why a fit's curve must not be read as a law (short, for a plot title)."""
    out = [] if fit.r2 >= 0 else [f"R² {fit.r2:.2f}"]
    out += [] if np.isfinite(fit.heldout_error) else ["no held-out error"]
    return out + ([] if fit.converged else ["not converged"])


def pareto_plot(trials: pd.DataFrame) -> Plot | None:
    acc, size = "metrics.val/acc", "metrics.model/params"
    done = _done(trials).dropna(subset=[c for c in (acc, size) if c in trials.columns])
    if done.empty or not {acc, size} <= set(done.columns):
        return None
    front = pareto_front(done, {acc: "max", size: "min"}).sort_values(size)
    return Plot(
        "pareto",
        "Pareto front: val/acc (max) vs. model/params (min)",
        "model/params (nonzero)",
        "val/acc",
        [
            Series("trials", _floats(done[size]), _floats(done[acc]), "markers"),
            Series("front", _floats(front[size]), _floats(front[acc]), "lines+markers"),
        ],
        logx=True,
    )


def comm_plot(trials: pd.DataFrame, history: pd.DataFrame) -> Plot | None:
    """val/loss vs. cumulative comm/bytes_sent, one line per comm.strategy (mean over the
    trials of a strategy at each report step)."""
    by = "params.comm.strategy"
    if history.empty or by not in trials.columns:
        return None
    wide = history.pivot_table(index=["trial", "step"], columns="name", values="value")
    if not {"val/loss", "comm/bytes_sent"} <= set(wide.columns):
        return None
    strategies = _done(trials).set_index("number")[by]
    wide = wide.reset_index().join(strategies, on="trial").dropna(subset=[by])
    if wide.empty:
        return None
    plot = Plot(
        "comm", "val/loss vs. bytes sent per worker, per comm.strategy", "bytes sent", "val/loss"
    )
    plot.logx = True
    for strategy, rows in wide.groupby(by, sort=True):
        mean = rows.groupby("step")[["comm/bytes_sent", "val/loss"]].mean().dropna()
        mean = mean[mean["comm/bytes_sent"] > 0]
        plot.series.append(
            Series(str(strategy), _floats(mean["comm/bytes_sent"]), _floats(mean["val/loss"]))
        )
    return plot if any(s.x for s in plot.series) else None


def to_plotly(plot: Plot) -> Any:
    import plotly.graph_objects as go

    fig = go.Figure()
    for s in plot.series:
        if s.low is not None and s.high is not None:
            fig.add_trace(
                go.Scatter(
                    x=s.x + s.x[::-1],
                    y=s.high + s.low[::-1],
                    fill="toself",
                    opacity=0.2,
                    line={"width": 0},
                    name=f"{s.name} band",
                    showlegend=False,
                )
            )
        fig.add_trace(go.Scatter(x=s.x, y=s.y, mode=s.mode, name=s.name))
    fig.update_layout(title=plot.title, xaxis_title=plot.xlabel, yaxis_title=plot.ylabel)
    if plot.logx:
        fig.update_xaxes(type="log")
    if plot.logy:
        fig.update_yaxes(type="log")
    return fig


def to_png(plot: Plot, path: Path) -> Path:
    """Draw ``plot`` with matplotlib (Agg, no display) to the PNG file ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=120)
    try:
        for s in plot.series:
            if s.low is not None and s.high is not None:
                ax.fill_between(s.x, s.low, s.high, alpha=0.2)
            style = {"lines": "-", "markers": "o", "lines+markers": "-o"}[s.mode]
            ax.plot(s.x, s.y, style, label=s.name, markersize=4)
        ax.set(title=plot.title, xlabel=plot.xlabel, ylabel=plot.ylabel)
        ax.title.set_fontsize(9)
        if plot.logx:
            ax.set_xscale("log")
        if plot.logy:
            ax.set_yscale("log")
        if 0 < len(plot.series) <= 12:
            ax.legend(fontsize=7)
        fig.tight_layout()
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path)
        return path
    finally:
        plt.close(fig)
