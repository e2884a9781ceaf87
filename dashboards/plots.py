"""The report's plots as plain data, drawn by plotly (HTML) or matplotlib (PNG).

Each ``*_plot`` function turns trials and metric history into a :class:`Plot` (series of
x/y points, optionally with a band or error bars), or None when the sweep has nothing to
show for it. ``to_plotly`` draws one for the HTML report; ``to_png`` draws the same data
with matplotlib for papers and for the MLflow parent run.

A line is a config group, never a trial: replicate seeds of one config are averaged (the
band or error bars: ± 1 standard deviation over the seeds) and the legend names the config
by its varied keys, with the number of seeds when some config has more than one.

>>> import pandas as pd
>>> df = pd.DataFrame({"status": ["COMPLETED"] * 4, "params.prune.method": ["a", "a", "b", "b"],
...     "params.prune.sparsity": [0.5, 0.0, 0.5, 0.5], "params.train.seed": [0, 0, 0, 1],
...     "metrics.model/sparsity": [0.5, 0.0, 0.5, 0.5], "metrics.val/acc": [0.8, 0.9, 0.7, 0.6]})
>>> p = accuracy_vs_sparsity_plot(df)
>>> [(s.name, s.x, [round(y, 3) for y in s.y]) for s in p.series]
[('prune.method=a (n=1)', [0.0, 0.5], [0.9, 0.8]), ('prune.method=b (n=2)', [0.5], [0.65])]
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from spx.dashboards.columns import config_groups, config_label, varied
from spx.dashboards.pareto import pareto_front

__all__ = [
    "Plot",
    "Series",
    "accuracy_vs_sparsity_plot",
    "comm_plot",
    "fit_band_plot",
    "is_dense",
    "objective_plots",
    "pareto_plot",
    "schedules_plot",
    "to_plotly",
    "to_png",
]

BAND = "band: ± 1 std over seeds"
BARS = "error bars: ± 1 std over seeds"


@dataclass
class Series:
    name: str
    x: list[float]
    y: list[float]
    mode: str = "lines+markers"  # lines | markers | lines+markers
    low: list[float] | None = None
    """With ``high``: a band around a line, error bars on markers."""
    high: list[float] | None = None
    text: list[str] | None = None
    """Per point, shown on hover (plotly): which config a point is."""
    shape: Literal["linear", "hv"] = "linear"
    """``hv``: a step line (a running best holds its value until the next improvement)."""


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


def _finite(df: pd.DataFrame, columns: Sequence[str]) -> pd.DataFrame:
    values = df[list(columns)].apply(pd.to_numeric, errors="coerce").to_numpy(dtype=float)
    return df[np.isfinite(values).all(axis=1)]


@dataclass
class _Point:
    """One config group's mean (x, y) and the spread of y over its seeds."""

    label: str
    x: float
    y: float
    std: float
    n: int


def _point(label: str, rows: pd.DataFrame, x: str, y: str) -> _Point:
    std = float(rows[y].std()) if len(rows) > 1 else 0.0
    return _Point(label, float(rows[x].mean()), float(rows[y].mean()), std, len(rows))


def _series(name: str, points: list[_Point], mode: str = "lines+markers") -> Series:
    points = sorted(points, key=lambda p: p.x)
    out = Series(name, [p.x for p in points], [p.y for p in points], mode)
    out.low = [p.y - p.std for p in points]
    out.high = [p.y + p.std for p in points]
    out.text = [f"{p.label} (n={p.n})" for p in points]
    return out


def _seeds(ns: Sequence[int]) -> str:
    """The legend's seed count: ``n=2``, or ``n=1-2`` where a seed of a config is missing."""
    low, high = min(ns), max(ns)
    return f"n={low}" if low == high else f"n={low}-{high}"


def _name(label: str, ns: Sequence[int], replicated: bool) -> str:
    return f"{label} ({_seeds(ns)})" if replicated else label


def is_dense(trials: pd.DataFrame) -> bool:
    """Every trial trains dense (``prune.method`` none): the sweep has no sparsity to plot."""
    by = "params.prune.method"
    return len(trials) > 0 and by in trials.columns and set(trials[by].astype(str)) == {"none"}


def accuracy_vs_sparsity_plot(trials: pd.DataFrame) -> Plot | None:
    """val/acc vs. achieved sparsity: a line per combination of the other varied keys
    (through the ``prune.sparsity`` targets), each point a config's mean over its seeds.
    When no line would join two points, the configs are points, one series per method."""
    x, y, target = "metrics.model/sparsity", "metrics.val/acc", "params.prune.sparsity"
    by = "params.prune.method"
    if trials.empty or not {x, y, by} <= set(trials.columns) or is_dense(trials):
        return None
    keys = varied(trials)
    done = _finite(_done(trials), [x, y])
    lines = [
        (label, _config_points(rows, keys, x, y))
        for label, rows in config_groups(done, exclude=(target,), keys=keys)
    ]
    if not lines:
        return None
    replicated = any(p.n > 1 for _, points in lines for p in points)
    scattered = len(lines) > 1 and all(len(points) == 1 for _, points in lines)
    mode = "lines+markers"
    if scattered:
        lines = [
            (method, _config_points(rows, keys, x, y))
            for method, rows in config_groups(done, keys=[by])
        ]
        mode = "markers"
    spread = f" (mean over seeds, {BARS if scattered else BAND})" if replicated else ""
    plot = Plot(
        "accuracy_vs_sparsity",
        "Accuracy vs. achieved sparsity, "
        + ("a point per config, per method" if scattered else "one line per config")
        + spread,
        "sparsity",
        "val/acc",
    )
    for label, points in lines:
        name = _name(label, [p.n for p in points], replicated)
        plot.series.append(_series(name, points, mode))
    return plot


def _config_points(rows: pd.DataFrame, keys: list[str], x: str, y: str) -> list[_Point]:
    return [_point(label, c, x, y) for label, c in config_groups(rows, keys=keys)]


def schedules_plot(trials: pd.DataFrame, history: pd.DataFrame) -> Plot | None:
    """The realized ``model/sparsity`` per step, one line per config (mean over seeds)."""
    if history.empty or trials.empty or is_dense(trials):
        return None
    sparsity = history[history["name"] == "model/sparsity"]
    lines = _history_lines(trials, sparsity, "step", "value")
    if not lines:
        return None
    replicated = any(max(ns) > 1 for _, ns in lines)
    plot = Plot(
        "schedules",
        "Realized sparsity schedules (model/sparsity per step), one line per config"
        + (f" ({BAND})" if replicated else ""),
        "step",
        "sparsity",
    )
    plot.series = [_named(s, ns, replicated) for s, ns in lines]
    return plot


def _named(series: Series, ns: list[int], replicated: bool) -> Series:
    series.name = _name(series.name, ns, replicated)
    return series


def _history_lines(
    trials: pd.DataFrame, wide: pd.DataFrame, x: str, y: str
) -> list[tuple[Series, list[int]]]:
    """Per config group of ``trials``: its ``y`` against ``x`` from the history rows
    ``wide`` (a ``trial`` column; ``x`` and ``y`` columns), averaged over the group's trials
    at each step, the band ± 1 std of ``y``; with the seed count at each step."""
    groups = config_groups(trials, keys=varied(trials))
    owner = {n: i for i, (_, rows) in enumerate(groups) for n in rows["number"].tolist()}
    rows = _finite(wide, [x, y])
    rows = rows.assign(group=rows["trial"].map(owner)).dropna(subset=["group"])
    stats = rows.groupby(["group", "step"]).agg(
        x=(x, "mean"), y=(y, "mean"), std=(y, "std"), n=("trial", "nunique")
    )
    stats["std"] = stats["std"].fillna(0.0)
    out = []
    for group, line in stats.groupby(level="group", sort=True):
        series = Series(groups[int(group)][0], _floats(line["x"]), _floats(line["y"]), "lines")
        series.low = _floats(line["y"] - line["std"])
        series.high = _floats(line["y"] + line["std"])
        out.append((series, [int(n) for n in line["n"]]))
    return out


def objective_plots(trials: pd.DataFrame, objectives: Sequence[tuple[str, str]]) -> list[Plot]:
    """For an adaptive search: each objective (metric, goal) of each trial against its trial
    number, with the best so far over the completed trials; one plot per objective.
    Keys: ``objective_vs_trial``, then ``objective_vs_trial_2``, ... ."""
    keys = varied(trials)
    plots = []
    for i, (metric, goal) in enumerate(objectives):
        column = f"metrics.{metric}"
        if trials.empty or column not in trials.columns:
            continue
        done = _finite(_done(trials), [column]).sort_values("number")
        if done.empty:
            continue
        values = done[column].astype(float)
        best = values.cummin() if goal == "minimize" else values.cummax()
        numbers = _floats(done["number"])
        points = Series("completed trials", numbers, _floats(values), "markers")
        points.text = [config_label(row, keys) for _, row in done.iterrows()]
        running = Series(f"best so far ({goal[:3]})", numbers, _floats(best), "lines", shape="hv")
        plot = Plot(
            "objective_vs_trial" if i == 0 else f"objective_vs_trial_{i + 1}",
            f"Objective {metric} ({goal}) per trial, and the best so far",
            "trial number",
            metric,
            [points, running],
        )
        pruned = trials[trials["status"] == "PRUNED"]
        pruned = _finite(pruned, [column]).sort_values("number") if len(pruned) else pruned
        if len(pruned):
            plot.series.insert(
                1,
                Series(
                    "pruned (last report)",
                    _floats(pruned["number"]),
                    _floats(pruned[column]),
                    "markers",
                ),
            )
        plots.append(plot)
    return plots


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
    """val/acc vs. nonzero parameters, a point per config (mean over its seeds, error bars
    ± 1 std), and the front of those points."""
    acc, size = "metrics.val/acc", "metrics.model/params"
    if trials.empty or not {acc, size} <= set(trials.columns):
        return None
    keys = varied(trials)
    done = _finite(_done(trials), [acc, size])
    points = [_point(label, rows, size, acc) for label, rows in config_groups(done, keys=keys)]
    if not points:
        return None
    means = pd.DataFrame({"x": [p.x for p in points], "y": [p.y for p in points]})
    front = pareto_front(means, {"y": "max", "x": "min"}).index
    replicated = any(p.n > 1 for p in points)
    configs = _series("configs" if replicated else "trials", points, "markers")
    line = _series("front", [points[i] for i in front])
    line.low = line.high = None
    return Plot(
        "pareto",
        "Pareto front: val/acc (max) vs. model/params (min)"
        + (f", per config (mean over seeds, {BARS})" if replicated else ""),
        "model/params (nonzero)",
        "val/acc",
        [configs, line],
        logx=True,
    )


def comm_plot(trials: pd.DataFrame, history: pd.DataFrame) -> Plot | None:
    """val/loss vs. cumulative comm/bytes_sent, one line per config (the comm.strategy
    and the other varied keys; mean over its seeds at each report step)."""
    by = "params.comm.strategy"
    if history.empty or trials.empty or by not in trials.columns:
        return None
    wide = history.pivot_table(index=["trial", "step"], columns="name", values="value")
    if not {"val/loss", "comm/bytes_sent"} <= set(wide.columns):
        return None
    wide = wide.reset_index()
    wide = wide[wide["comm/bytes_sent"] > 0]
    done = _done(trials).dropna(subset=[by])
    lines = _history_lines(done, wide, "comm/bytes_sent", "val/loss")
    if not lines:
        return None
    replicated = any(max(ns) > 1 for _, ns in lines)
    plot = Plot(
        "comm",
        "val/loss vs. bytes sent per worker, one line per config"
        + (f" ({BAND})" if replicated else ""),
        "bytes sent",
        "val/loss",
    )
    plot.logx = True
    plot.series = [_named(s, ns, replicated) for s, ns in lines]
    return plot


def _bars(s: Series) -> bool:
    """Error bars (markers) rather than a band (lines)."""
    return s.mode == "markers" and s.low is not None and s.high is not None


def to_plotly(plot: Plot) -> Any:
    import plotly.graph_objects as go

    fig = go.Figure()
    for s in plot.series:
        if s.low is not None and s.high is not None and not _bars(s):
            fig.add_trace(
                go.Scatter(
                    x=s.x + s.x[::-1],
                    y=s.high + s.low[::-1],
                    fill="toself",
                    opacity=0.2,
                    line={"width": 0},
                    name=f"{s.name} band",
                    showlegend=False,
                    hoverinfo="skip",
                )
            )
        error = None
        if _bars(s):
            assert s.low is not None and s.high is not None
            error = {
                "type": "data",
                "symmetric": False,
                "array": [h - y for h, y in zip(s.high, s.y, strict=True)],
                "arrayminus": [y - lo for lo, y in zip(s.low, s.y, strict=True)],
            }
        fig.add_trace(
            go.Scatter(
                x=s.x,
                y=s.y,
                mode=s.mode,
                name=s.name,
                text=s.text,
                error_y=error,
                line={"shape": s.shape},
            )
        )
    fig.update_layout(title=plot.title, xaxis_title=plot.xlabel, yaxis_title=plot.ylabel)
    if plot.logx:
        fig.update_xaxes(type="log")
    if plot.logy:
        fig.update_yaxes(type="log")
    return fig


LEGEND_MAX = 30
"""More series than this get no legend in a PNG (the HTML's is interactive)."""


def to_png(plot: Plot, path: Path) -> Path:
    """Draw ``plot`` with matplotlib (Agg, no display) to the PNG file ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=120)
    try:
        for s in plot.series:
            style = {"lines": "-", "markers": "o", "lines+markers": "-o"}[s.mode]
            drawstyle = "steps-post" if s.shape == "hv" else "default"
            (line,) = ax.plot(s.x, s.y, style, label=s.name, markersize=4, drawstyle=drawstyle)
            if s.low is None or s.high is None:
                continue
            if _bars(s):
                spread = [
                    [y - lo for lo, y in zip(s.low, s.y, strict=True)],
                    [h - y for h, y in zip(s.high, s.y, strict=True)],
                ]
                ax.errorbar(s.x, s.y, yerr=spread, fmt="none", ecolor=line.get_color())
            else:
                ax.fill_between(s.x, s.low, s.high, alpha=0.2, color=line.get_color())
        ax.set(title=plot.title, xlabel=plot.xlabel, ylabel=plot.ylabel)
        ax.title.set_fontsize(8)
        if plot.logx:
            ax.set_xscale("log")
        if plot.logy:
            ax.set_yscale("log")
        if 0 < len(plot.series) <= 6:
            ax.legend(fontsize=7)
        elif len(plot.series) <= LEGEND_MAX:  # long config names: beside the axes
            ax.legend(fontsize=5, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, bbox_inches="tight")
        return path
    finally:
        plt.close(fig)
