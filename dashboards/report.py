"""One self-contained HTML report of a sweep (``spx report``): plotly with its JavaScript
embedded, so the file works offline.

Sections: the best trials, the arms side by side (mean ± std over seeds, when
``train.seed`` is one of the varied keys), then the plots the sweep has data for, each
line a config (its seeds averaged, the legend naming its varied keys): for an adaptive
search (tpe, cmaes, ...) the objective per trial with the best so far, accuracy vs.
sparsity, the Pareto front of accuracy vs. parameters, loss vs. bytes sent, the realized
sparsity schedules (a sweep whose every trial is dense gets one line instead of the
sparsity plots); then the scaling laws (per law its fitted curve with the bootstrap band,
its coefficients with ``identifiable`` flags, or one line saying why it was not fitted;
then the compare-laws verdict), and every trial.
Example: ``write_report("quickstart", Path("report.html"))``
"""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from spx.dashboards.columns import varied
from spx.dashboards.compare import compare_laws
from spx.dashboards.frames import Sweep
from spx.dashboards.plots import (
    Plot,
    accuracy_vs_sparsity_plot,
    comm_plot,
    fit_band_plot,
    is_dense,
    objective_plots,
    pareto_plot,
    schedules_plot,
    to_plotly,
    to_png,
)
from spx.dashboards.scaling import INPUTS, TARGET, LawName, ScalingFit, fit_scaling_law
from spx.errors import SpxError
from spx.platform.limits import load_yaml
from spx.platform.paths import check_output, write_output
from spx.platform.store import SweepRow

__all__ = [
    "ScalingSection",
    "build_plots",
    "is_adaptive",
    "objectives",
    "render_report",
    "scaling_section",
    "write_report",
]

_TABLE_METRICS = ["metrics.val/loss", "metrics.val/acc", "metrics.model/sparsity", "n_avg"]


HISTORY = ["model/sparsity", "val/loss", "comm/bytes_sent"]
DENSE_LINE = "No sparsity plots: every trial trains dense (prune.method none)."


def write_report(
    name: str,
    output: Path,
    store_url: str | None = None,
    png_dir: Path | None = None,
    force: bool = False,
) -> Path:
    """Render the report of sweep ``name`` and write it to ``output`` atomically; with
    ``png_dir``, also draw the key plots there as PNGs (matplotlib).

    An existing ``output`` is replaced only with ``force``; a bad path (a folder, a missing
    folder) is a ConfigError before anything is read (``spx.platform.paths.write_output``).
    """
    check_output(output, force)
    with Sweep.load(name, store_url) as sw:
        trials, history = sw.trials_df(), sw.history_df(HISTORY)
    adaptive = objectives(sw.row) if is_adaptive(sw.row.method) else []
    plots, scaling = build_plots(trials, history, adaptive)
    write_output(output, render_report(sw.name, trials, plots, scaling), force)
    if png_dir is not None:
        for plot in [*plots, *scaling.plots]:
            to_png(plot, png_dir / f"{plot.key}.png")
    return output


def build_plots(
    trials: pd.DataFrame,
    history: pd.DataFrame,
    adaptive: list[tuple[str, str]] | None = None,
) -> tuple[list[Plot], ScalingSection]:
    """The report's plots (those the sweep has data for) and its scaling section;
    ``adaptive``: the (metric, goal) objectives of an adaptive search, each drawn per trial.
    """
    found = [
        *objective_plots(trials, adaptive or []),
        accuracy_vs_sparsity_plot(trials),
        pareto_plot(trials),
        comm_plot(trials, history),
        schedules_plot(trials, history),
    ]
    return [p for p in found if p is not None], scaling_section(trials)


def is_adaptive(method: str) -> bool:
    """Whether the sweep's search strategy adapts to the results (its registry flag); a
    method this spx does not know (a store from another version) is taken as not."""
    from spx.search.strategies import strategy_class  # imports Optuna: only when asked

    try:
        return strategy_class(method).adaptive
    except KeyError:
        return False


def objectives(sweep: SweepRow) -> list[tuple[str, str]]:
    """The (metric, goal) objectives of a stored sweep, read from its spec text with the
    YAML loader only (the text passed the full parser at launch); the defaults of
    ``spx.platform.sweep_models.Objective`` where a key is missing."""
    try:
        data = load_yaml(sweep.spec_text)
    except SpxError:  # a store written by hand; the defaults, as for a missing key
        data = None
    raw = (data.get("objective") if isinstance(data, dict) else None) or {}
    return [
        (str(o.get("metric", "val/loss")), str(o.get("goal", "minimize")))
        for o in (raw if isinstance(raw, list) else [raw])
        if isinstance(o, dict)
    ]


def render_report(
    name: str, trials: pd.DataFrame, plots: list[Plot], scaling: ScalingSection | None = None
) -> str:
    """The report's HTML from a ``trials_df``, its plots and its scaling section."""
    parts = [f"<h1>Sweep {html.escape(name)}</h1>", _counts(trials)]
    parts += [_section("Best trials", _table(_best(trials)))]
    arms = _arms(trials)
    if arms is not None:
        parts.append(_section("Arms over seeds (mean ± std)", arms))
    # The plotly.js bundle goes into the page once, with the first figure.
    shown = [*plots, *(scaling.plots if scaling else [])]
    figures = [_figure(plot, with_plotlyjs=i == 0) for i, plot in enumerate(shown)]
    parts += figures[: len(plots)]
    if is_dense(trials):
        parts.append(f"<p class='no-plot'>{html.escape(DENSE_LINE)}</p>")
    if scaling is not None:
        parts.append(_section(SCALING_TITLE, "".join(figures[len(plots) :]) + scaling.html))
    parts.append(_section("All trials", _table(trials)))
    body = "\n".join(parts)
    return (
        "<!DOCTYPE html><html><head><meta charset='utf-8'>"
        f"<title>spx report: {html.escape(name)}</title>"
        "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:2px 6px;font-size:12px}</style></head>"
        f"<body>{body}</body></html>"
    )


def _figure(plot: Plot, with_plotlyjs: bool) -> str:
    return to_plotly(plot).to_html(full_html=False, include_plotlyjs=with_plotlyjs, div_id=plot.key)


def _section(title: str, content: str) -> str:
    return f"<h2>{html.escape(title)}</h2>{content}"


def _counts(trials: pd.DataFrame) -> str:
    counts = trials["status"].value_counts().to_dict() if len(trials) else {}
    text = ", ".join(f"{v} {k.lower()}" for k, v in sorted(counts.items())) or "no trials"
    return f"<p>{len(trials)} trials: {html.escape(text)}</p>"


def _columns(trials: pd.DataFrame) -> list[str]:
    shown = [c for c in _TABLE_METRICS if c in trials.columns]
    return ["number", "status", *varied(trials), *shown]


def _table(trials: pd.DataFrame) -> str:
    if trials.empty:
        return "<p>none</p>"
    return trials[_columns(trials)].to_html(index=False, float_format="{:.4g}".format)


_ARM_METRICS = [
    "metrics.val/acc",
    "metrics.val/loss",
    "metrics.model/sparsity",
    "metrics.model/params",
    "metrics.model/flops",
    "metrics.nas/search_s",
]


def arm_summary(trials: pd.DataFrame) -> pd.DataFrame | None:
    """Completed trials grouped by every varied key but ``train.seed``: per arm, the seed
    count and mean/std of the final metrics. None when the sweep has no seeds axis."""
    seed = "params.train.seed"
    varied = [c for c in _columns(trials) if c.startswith("params.") and c != seed]
    done = trials[trials["status"] == "COMPLETED"] if len(trials) else trials
    if seed not in _columns(trials) or not varied or done.empty:
        return None
    metrics = [m for m in _ARM_METRICS if m in done.columns]
    keys = done[varied].astype(str)
    grouped = done[metrics].groupby([keys[c] for c in varied], sort=False)
    out = grouped.agg(["mean", "std"])
    out.columns = [f"{m.removeprefix('metrics.')} {stat}" for m, stat in out.columns]
    out.insert(0, "seeds", grouped.size())
    return out.reset_index()


def _arms(trials: pd.DataFrame) -> str | None:
    summary = arm_summary(trials)
    if summary is None:
        return None
    return summary.to_html(index=False, float_format="{:.4g}".format)


def _best(trials: pd.DataFrame, k: int = 5) -> pd.DataFrame:
    if "metrics.val/loss" not in trials.columns:
        return trials.head(0)
    done = trials[trials["status"] == "COMPLETED"]
    return done.nsmallest(k, "metrics.val/loss")


SCALING_LAWS: dict[LawName, str] = {"journey": "N_avg, tokens", "chinchilla": "final N, tokens"}
SCALING_TITLE = "Scaling laws (" + "; ".join(f"{k}: {v}" for k, v in SCALING_LAWS.items()) + ")"


@dataclass
class ScalingSection:
    """The report's scaling section: each fitted law's curve (``plots``, keyed
    ``scaling_fit`` for journey, ``scaling_fit_<law>`` for the others) and the HTML of
    the coefficient tables, the lines saying why a law was not fitted, and the verdict."""

    plots: list[Plot] = field(default_factory=list)
    html: str = ""


def scaling_section(trials: pd.DataFrame, bootstrap: int = 100) -> ScalingSection:
    """Fit each of ``SCALING_LAWS`` the sweep has the columns for, and compare them.

    A law the data do not allow (a column missing, an input that never varies, too few
    trials) gets one line saying why instead of a plot; compare-laws runs when both fit.
    """
    section = ScalingSection()
    fits: dict[str, ScalingFit] = {}
    parts = []
    for law, inputs in SCALING_LAWS.items():
        title = f"<h3>{law} law ({html.escape(inputs)})</h3>"
        missing = [c.removeprefix("metrics.") for c in (*INPUTS[law], TARGET)]
        missing = [c for c in missing if f"metrics.{c}" not in trials.columns]
        if missing:
            parts.append(_line(f"{law} law: not fitted: the sweep records no {', '.join(missing)}"))
            continue
        try:
            fits[law] = fit = fit_scaling_law(trials, law=law, bootstrap=bootstrap)
        except SpxError as exc:
            parts.append(_line(f"{law} law: not fitted: {str(exc)[:300]}"))
            continue
        plot = fit_band_plot(trials, fit)
        if plot is not None:
            plot.key = "scaling_fit" if law == "journey" else f"scaling_fit_{law}"
            section.plots.append(plot)
        parts.append(title + _fit_table(fit))
    parts.append(_comparison(trials, fits))
    section.html = "".join(parts)
    return section


def _line(text: str) -> str:
    return f"<p class='no-fit'>{html.escape(text)}</p>"


def _comparison(trials: pd.DataFrame, fits: dict[str, ScalingFit]) -> str:
    unfitted = [law for law in SCALING_LAWS if law not in fits]
    if unfitted:
        return _line(f"compare-laws: not run: {' and '.join(unfitted)} not fitted")
    try:
        result = compare_laws(trials, tuple(SCALING_LAWS), folds=5, bootstrap=2000)
    except SpxError as exc:
        return _line(f"compare-laws: not run: {str(exc)[:300]}")
    low, high = result.interval
    first, second = result.laws
    rows = "".join(
        f"<tr><td>{law}</td><td>{error:.4g}</td></tr>"
        for law, error in result.heldout_error.items()
    )
    return (
        f"<h3>compare-laws</h3><table><tr><th>law</th><th>held-out RMSE (log L)</th></tr>"
        f"{rows}</table><p>{result.folds} folds by {html.escape(result.fold_by)} "
        f"({result.units} {result.unit}s), {result.n} of {result.usable} trials predicted; "
        f"difference ({first} − {second}) "
        f"{result.difference:.4g}, {result.level * 100:g} % paired-bootstrap interval "
        f"[{low:.4g}, {high:.4g}]</p><p class='verdict'><b>Verdict:</b> "
        f"{html.escape(result.verdict)}</p>"
    )


def _fit_table(fit: ScalingFit) -> str:
    rows = "".join(
        f"<tr><td>{k}</td><td>{v:.4g}</td><td>[{lo:.4g}, {hi:.4g}]</td>"
        f"<td>{'yes' if fit.identifiable[k] else '<b>no</b>'}</td></tr>"
        for k, v in fit.coefficients.items()
        for lo, hi in [fit.intervals[k]]
    )
    warnings = "".join(
        f"<p class='warning' style='color:#a00;font-weight:bold'>Warning: {html.escape(w)}</p>"
        for w in fit.warnings
    )
    return (
        f"{warnings}<table><tr><th>coefficient</th><th>value</th><th>95 % interval</th>"
        f"<th>identifiable</th></tr>{rows}</table><p>R² (log L) {fit.r2:.4f}, held-out RMSE "
        f"(log L) {fit.heldout_error:.4g}, n {fit.n}, optimizer converged: {fit.converged}</p>"
    )
