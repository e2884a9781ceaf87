"""The read-side commands of ``spx``: ``analyze scaling-law|compare-laws|pareto``,
``query``, ``report``.

Thin typer commands over ``spx.dashboards``; mounted on the main app by ``register``.
Bad input raises ConfigError / NotFoundError, which ``spx.cli.main`` turns into exit 2.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, cast

import typer
from rich.table import Table

from spx.cli_options import AsJson, Force, Store_
from spx.cli_output import PipeConsole, print_table, reader_may_close, write_text
from spx.errors import ConfigError

if TYPE_CHECKING:
    from spx.dashboards.pareto import Goal
    from spx.dashboards.scaling import LawName

analyze_app = typer.Typer(no_args_is_help=True, help="Scaling-law fits and Pareto fronts.")
out = PipeConsole(soft_wrap=True)


def register(app: typer.Typer) -> None:
    """Mount the read commands on the main ``spx`` app."""
    app.add_typer(analyze_app, name="analyze")
    app.command("query")(query)
    app.command("report")(report)


def _store_url(store: str | None) -> str:
    """The store's URL, once it is known to hold a store: a read creates nothing."""
    from spx.platform.readonly import require_store
    from spx.platform.settings import resolve

    url = resolve(store).store_url
    require_store(url)
    return url


def _trials(sweep: str, store: str | None):
    from spx.dashboards.frames import Sweep

    with Sweep.load(sweep, _store_url(store)) as sw:
        return sw.trials_df()


@analyze_app.command("scaling-law")
def scaling_law(
    sweep: str,
    law: Annotated[str, typer.Option(help="journey | chinchilla | power")] = "journey",
    x: Annotated[str | None, typer.Option("--x", help="input column (power law)")] = None,
    y: Annotated[str, typer.Option("--y", help="loss column")] = "val/loss",
    group_by: Annotated[str | None, typer.Option("--group-by", help="one fit per value")] = None,
    bootstrap: Annotated[int, typer.Option(help="bootstrap refits for the intervals")] = 200,
    holdout: Annotated[
        str, typer.Option(help="held-out fraction per fold, or a column (leave-one-group-out)")
    ] = "0.2",
    store: Store_ = None,
    as_json: AsJson = False,
    plot: Annotated[
        Path | None, typer.Option("--plot", help="also draw the fit and its band: .png or .html")
    ] = None,
) -> None:
    """Fit a scaling law to a sweep's completed trials: coefficients, intervals, errors."""
    from spx.dashboards.scaling import fit_scaling_law
    from spx.platform.views import to_json

    if plot is not None and plot.suffix.lower() not in (".png", ".html"):
        raise ConfigError("--plot writes a .png or an .html file", field="--plot", value=str(plot))
    trials = _trials(sweep, store)
    fits = fit_scaling_law(
        trials,
        cast("LawName", law),  # checked by fit_scaling_law, which lists the laws
        group_by,
        x=x,
        y=y,
        bootstrap=bootstrap,
        holdout=_fraction_or_column(holdout),
    )
    rows = list(fits.values()) if isinstance(fits, dict) else [fits]
    if plot is not None:
        _draw_fit(trials, rows, plot)
    if as_json:
        print(to_json([f.to_dict() for f in rows]))
        return
    table = Table(
        "group", *rows[0].coefficients, "R²", "held-out", "n", "converged", "identifiable"
    )
    for f in rows:
        cells = [_interval(v, f.intervals[k]) for k, v in f.coefficients.items()]
        free = [k for k, ok in f.identifiable.items() if not ok]
        table.add_row(
            "all" if f.group is None else str(f.group),
            *cells,
            f"{f.r2:.4f}",
            f"{f.heldout_error:.4g}",
            str(f.n),
            "yes" if f.converged else f"NO: {f.message}",
            f"NO: {', '.join(free)}" if free else "yes",
        )
    out.print(f"{rows[0].law} law, {rows[0].target} ~ {', '.join(rows[0].inputs)}")
    out.print(table)
    for f in rows:
        where = "" if f.group is None else f" ({f.group})"
        for text in f.warnings:
            out.print(f"warning{where}: {text}", markup=False, highlight=False, style="yellow")


@analyze_app.command("compare-laws")
def compare_laws(
    sweep: str,
    laws: Annotated[
        list[str] | None,
        typer.Option("--laws", "--law", help="two laws: journey,chinchilla (or repeat)"),
    ] = None,
    folds: Annotated[int, typer.Option(help="cross-validation folds")] = 5,
    by: Annotated[
        str | None, typer.Option("--by", help="one fold per value of this column instead")
    ] = None,
    bootstrap: Annotated[int, typer.Option(help="paired bootstrap resamples")] = 2000,
    seed: Annotated[int, typer.Option(help="seed of the folds and the resamples")] = 0,
    level: Annotated[float, typer.Option(help="level of the interval")] = 0.95,
    margin: Annotated[
        float, typer.Option(help="smallest difference that counts, x the lower error")
    ] = 0.01,
    y: Annotated[str, typer.Option("--y", help="loss column")] = "val/loss",
    store: Store_ = None,
    as_json: AsJson = False,
) -> None:
    """Which of two laws predicts held-out trials better, on the same folds, and whether
    the difference is significant (a paired bootstrap interval excluding 0 by the margin)."""
    from spx.dashboards.compare import compare_laws as compare
    from spx.platform.views import to_json

    names = [n for text in (laws or ["journey,chinchilla"]) for n in text.split(",")]
    trials = _trials(sweep, store)
    result = compare(trials, names, folds, bootstrap, seed, level=level, margin=margin, by=by, y=y)
    if as_json:
        print(to_json(result.to_dict()))
        return
    first, second = result.laws
    out.print(
        f"{first} vs {second}: {result.target}, {result.folds} folds by {result.fold_by}; "
        f"{result.n} of {result.usable} usable trials predicted, {result.units} "
        f"{result.unit}s resampled",
        markup=False,
        highlight=False,
    )
    table = Table("law", "held-out RMSE (log L)")
    for name, error in result.heldout_error.items():
        table.add_row(name, f"{error:.4g}")
    out.print(table)
    pct = f"{result.level * 100:g} %"
    low, high = result.interval
    out.print(
        f"difference ({first} - {second}): {result.difference:.4g}, {pct} interval "
        f"[{low:.4g}, {high:.4g}] ({result.bootstrap} paired resamples)",
        markup=False,
        highlight=False,
    )
    out.print(f"verdict: {result.verdict}", markup=False, highlight=False)


def _draw_fit(trials, fits, path: Path) -> None:
    from spx.dashboards.plots import fit_band_plot, to_plotly, to_png

    drawn = fit_band_plot(trials, fits)
    if drawn is None:
        raise ConfigError("nothing to draw: no completed trial has the law's columns")
    if path.suffix.lower() == ".png":
        to_png(drawn, path)
    else:
        to_plotly(drawn).write_html(path, include_plotlyjs=True)
    typer.echo(f"wrote {path}", err=True)


@analyze_app.command("pareto")
def pareto(
    sweep: str,
    objective: Annotated[
        list[str], typer.Option("--objective", help="COLUMN:min|max, repeat for each")
    ],
    store: Store_ = None,
    as_json: AsJson = False,
) -> None:
    """The trials on the Pareto front of the given objectives."""
    from spx.dashboards.pareto import pareto_front
    from spx.platform.views import to_json

    goals = dict(_objective(o) for o in objective)
    front = pareto_front(_trials(sweep, store), goals)
    shown = ["number", *[c for c in front.columns if _short(c) in goals or c in goals]]
    records = front[shown].to_dict("records")
    if as_json:
        print(to_json(records))
        return
    table = Table(*shown)
    for r in records:
        table.add_row(*(f"{v:.5g}" if isinstance(v, float) else str(v) for v in r.values()))
    out.print(table)


def query(
    sql: Annotated[str, typer.Argument(help="one SQL statement, e.g. SELECT * FROM trial_summary")],
    store: Store_ = None,
    as_json: AsJson = False,
    as_csv: Annotated[bool, typer.Option("--csv", help="print CSV, row by row")] = False,
    timeout: Annotated[
        float, typer.Option("--timeout", help="seconds before the query is cancelled")
    ] = 30.0,
    limit: Annotated[int, typer.Option("--limit", help="at most this many rows")] = 100_000,
) -> None:
    """Run one read-only SQL statement on the results store (views: trial_summary,
    metric_history): SELECT, WITH ... SELECT, VALUES, TABLE, or EXPLAIN of one of those."""
    from spx.dashboards.query import query_rows

    if as_json and as_csv:
        raise ConfigError("choose one of --json and --csv", field="--csv", value=True)
    with query_rows(_store_url(store), sql, timeout_s=timeout, limit=limit) as rows:
        for note in rows.notes:
            typer.echo(note, err=True)
        if as_csv:
            _write_csv(rows)
        else:
            _print_rows(rows, as_json)
        if rows.truncated:
            typer.echo(f"note: output cut at {limit} rows (--limit)", err=True)


def _write_csv(rows) -> None:
    import csv

    # Each row goes out as it is fetched; nothing holds the whole result.
    writer = csv.writer(sys.stdout, lineterminator="\n")
    with reader_may_close():
        writer.writerow(rows.columns)
        for row in rows:
            writer.writerow(row)


def _print_rows(rows, as_json: bool) -> None:
    from spx.platform.views import to_json

    if as_json:
        write_text(to_json([dict(zip(rows.columns, row, strict=True)) for row in rows]))
        return
    print_table(out, [str(c) for c in rows.columns], rows)


def report(
    sweep: str,
    output: Annotated[Path, typer.Option("-o", "--output", help="HTML file to write")] = Path(
        "report.html"
    ),
    store: Store_ = None,
    force: Force = False,
) -> None:
    """Write one self-contained HTML report of a sweep (plots work offline)."""
    from spx.dashboards.report import write_report

    written = write_report(sweep, output, _store_url(store), force=force)
    out.print(f"wrote {written}")


def _fraction_or_column(value: str) -> float | str:
    try:
        return float(value)
    except ValueError:
        return value


def _objective(text: str) -> tuple[str, Goal]:
    name, _, goal = text.rpartition(":")
    if not name or goal not in ("min", "max"):
        raise ConfigError(
            "an objective is COLUMN:min or COLUMN:max", field="--objective", value=text
        )
    return name, cast("Goal", goal)


def _short(column: str) -> str:
    return column.split(".", 1)[1] if column.startswith(("metrics.", "params.")) else column


def _interval(value: float, bounds: tuple[float, float]) -> str:
    low, high = bounds
    if low != low:  # NaN: no bootstrap
        return f"{value:.4g}"
    return f"{value:.4g} [{low:.4g}, {high:.4g}]"
