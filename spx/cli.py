"""The ``spx`` command: thin typer commands over platform/ (and, later, dashboards/).

Exit codes: 0 ok, 1 runtime error, 2 bad input, 3 sweep finished with failed trials,
130 interrupted. A reader that closes the output early (``spx query --csv ... | head -1``)
ends the command quietly, exit 0.

Tables print as rich tables on a terminal, and as tab-separated lines, never cut, in a pipe.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.text import Text

from spx.cli_ops import hint_flags
from spx.cli_ops import register as register_ops_commands
from spx.cli_options import Address, AsJson, Force, Plain, Store_, Tracking
from spx.cli_output import PipeConsole, closed_pipe, is_terminal, print_table, write_text
from spx.cli_read import register as register_read_commands
from spx.cli_ui import register as register_ui_command
from spx.errors import ConfigError, SpxError

app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__)
sweep_app = typer.Typer(no_args_is_help=True, help="Validate, launch and inspect sweeps.")
app.add_typer(sweep_app, name="sweep")
register_read_commands(app)
out = PipeConsole(soft_wrap=True)


def _settings(store: str | None = None, tracking: str | None = None, address: str | None = None):
    from spx.platform.settings import resolve

    return resolve(store, tracking, address)


def _open_store(store: str | None):
    """The store of a command that reads an existing one: a URL with no store behind it
    (a typo) is "no store at ...", exit 2, and nothing is created there."""
    from spx.platform.readonly import require_store
    from spx.platform.store import Store

    url = _settings(store).store_url
    require_store(url)
    return Store.open(url)


@sweep_app.command("schema")
def schema() -> None:
    """Print the JSON Schema of the sweep file (for editors); its `method` lists the
    registered search strategies, each with what it can do, and `prune.method` the
    registered sparsity methods, each with its flags and its own `prune.*` knobs."""
    from spx.platform.schema import sweep_schema

    print(json.dumps(sweep_schema(), indent=2))


ForceMemory = Annotated[
    bool, typer.Option("--force", help="run trials larger than the memory spx checked")
]


@sweep_app.command("validate")
def validate(
    file: Path,
    show: Annotated[int, typer.Option(help="configs to print")] = 3,
    force: ForceMemory = False,
    address: Address = None,
    name: Annotated[str | None, typer.Option("--name", help="override the file's name")] = None,
) -> None:
    """Check a sweep file; print its trial count and first resolved configs.

    Capacity is checked against the cluster launch would use: the one at ``--address``
    (RAY_ADDRESS), else this machine."""
    from spx.platform.limits import precheck

    precheck(file)  # a hostile file's size, YAML or grid fails here, before torch loads
    from spx.platform import cluster, lineage, sizing
    from spx.platform.spec import load_spec, resolve_trials

    spec, _ = load_spec(file, name)
    nodes, where = cluster.capacity_of(_settings(address=address).ray_address)
    r = spec.resources
    cluster.check_capacity(r.cpus_per_worker, r.gpus_per_worker, r.workers_per_trial, nodes, where)
    configs = resolve_trials(spec)
    source = lineage.validate(spec, _settings())  # init.from, against the store
    memory = sizing.local_memory()
    needs = sizing.check_fits(spec, configs, memory, sizing.LOCAL, force)
    note = " (grid: `trials` is ignored)" if spec.method == "grid" and spec.trials else ""
    out.print(f"[green]ok[/]: {spec.name}: {len(configs)} trials, method {spec.method}{note}")
    cpus, gpus = (sum(n.get(k, 0.0) for n in nodes) for k in ("CPU", "GPU"))
    out.print(f"  capacity: a trial fits on {where} ({cpus:g} CPUs, {gpus:g} GPUs)")
    if source is not None:
        out.print(f"  init.from: {source.describe()}", markup=False, highlight=False)
    if needs is not None:
        out.print(
            f"  memory: the largest trial's tensors take about {sizing.human_bytes(needs)} "
            f"(this machine has {sizing.human_bytes(memory)}; launch checks the largest Ray node)"
        )
    _print_preview(spec, configs, show)


def _print_preview(spec, configs, show: int) -> None:
    """The first ``show`` trials exactly as launch will run them; those that depend on
    results are said to, never made up (platform/preview.py)."""
    from spx.platform.preview import preview

    flats = [c.flat() for c in configs]
    varied = [k for k in flats[0] if len({json.dumps(f[k]) for f in flats}) > 1]
    p = preview(spec, show)
    if p.known < p.total:
        first = "the first trial is" if p.known == 1 else f"the first {p.known} trials are"
        out.print(
            f"  {first} the seeded sampler's draws, as launch will run them; "
            f"the other {p.total - p.known} depend on the results of earlier trials"
        )
    for i, cfg in enumerate(p.configs):
        flat = cfg.flat()
        shown = ", ".join(f"{k}={flat[k]}" for k in varied) or "(every trial alike)"
        out.print(f"  trial {i}: {shown}")
    for i in range(len(p.configs), min(show, p.total)):
        out.print(f"  trial {i}: chosen by {spec.method} from the results of earlier trials")


@sweep_app.command("launch")
def launch(
    file: Path,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="validate and show; run nothing")
    ] = False,
    store: Store_ = None,
    tracking_uri: Tracking = None,
    address: Address = None,
    plain: Plain = False,
    name: Annotated[str | None, typer.Option("--name", help="override the file's name")] = None,
    detach: Annotated[
        bool, typer.Option("--detach", help="run the driver in the background and return")
    ] = False,
    force: ForceMemory = False,
) -> None:
    """Run a sweep: trials on Ray, results in the store and MLflow."""
    from spx.platform.driver import launch as run_sweep
    from spx.platform.spec import load_spec

    if dry_run:
        validate(file, force=force, address=address, name=name)
        return
    if detach:
        from spx.cli_ops import detach as start_detached

        start_detached(file, name, store, tracking_uri, address, force)
        return
    spec, text = load_spec(file, name)
    settings = _settings(store, tracking_uri, address)
    result = run_sweep(spec, text, settings, _display(spec, plain), force=force)
    _finish(result, settings)


def _display(spec, plain: bool):
    from spx.platform.progress import make_display

    goal = spec.objectives[0]
    return make_display(goal.metric, goal.goal, spec.resources.concurrent, False if plain else None)


def _finish(result, settings) -> None:
    """Where to look after a sweep ran; exit 3 when any trial failed."""
    _summary(result, settings)
    if result.failed:
        raise typer.Exit(3)


def _summary(result, settings) -> None:
    from spx.platform.settings import mask_url

    t = result.trials
    out.print(f"\n[bold]{result.sweep.name}[/]: {_end_counts(t)} of {len(t)}")
    if result.best is not None:
        b = result.best
        value = (b.metrics or {}).get(result.objective)
        out.print(f"best trial {b.number}: {result.objective}={value:.4f}")
        out.print("  " + ", ".join(f"{k}={b.params[k]}" for k in _varied(t)))
    out.print(f"report: {_write_report(result.sweep.name, settings)}")
    store, tracking = hint_flags(settings)
    out.print(f"store:  {mask_url(settings.store_url)}")
    out.print(f"        spx sweep show {_quote(result.sweep.name)}{store}")
    out.print(
        f"MLflow: spx ui{tracking}   "
        f"(serves {mask_url(settings.tracking_uri)} at http://127.0.0.1:5000)"
    )


def _end_counts(trials) -> str:
    """Like "4 completed, 2 pruned, 0 failed": completed and failed always, every other
    state (pruned; lost or pending in a stopped sweep) when a trial is in it."""
    counts: dict[str, int] = {}
    for trial in trials:
        counts[str(trial.status)] = counts.get(str(trial.status), 0) + 1
    order = ["COMPLETED", "PRUNED", "FAILED"]
    order += sorted(set(counts) - set(order))
    shown = [s for s in order if s in ("COMPLETED", "FAILED") or counts.get(s)]
    return ", ".join(f"{counts.get(s, 0)} {s.lower()}" for s in shown)


def _write_report(name: str, settings) -> str:
    """The sweep's HTML report (and PNGs of its plots) under SPX_HOME/reports, attached to
    the sweep's MLflow parent run; a failure here never fails the sweep."""
    from spx.dashboards.report import write_report
    from spx.platform.paths import report_file, report_plots
    from spx.platform.tracking import log_report

    path, pngs = report_file(settings, name), report_plots(settings, name)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_report(name, path, settings.store_url, png_dir=pngs, force=True)
    except Exception as exc:  # the sweep's results are safe in the store either way
        return f"not written ({type(exc).__name__}: {exc}); try: spx report {_quote(name)}"
    run_id = _open_store(settings.store_url).get_sweep(name).mlflow_run_id
    if run_id:
        log_report(settings.tracking_uri, run_id, [path, *sorted(pngs.glob("*.png"))])
    return str(path)


def _varied(trials) -> list[str]:
    keys = sorted({k for t in trials for k in t.params})
    return [k for k in keys if len({json.dumps(t.params.get(k)) for t in trials}) > 1]


def _quote(name: str) -> str:
    return name if name.replace("-", "").replace("_", "").isalnum() else repr(name)


@sweep_app.command("resume")
def resume(
    name: str,
    retry_failed: Annotated[
        bool, typer.Option("--retry-failed", help="run failed trials again")
    ] = False,
    store: Store_ = None,
    tracking_uri: Tracking = None,
    address: Address = None,
    plain: Plain = False,
) -> None:
    """Continue a sweep whose driver died; finished trials never run again. A sweep that
    completed is left as it is (nothing starts, nothing is written)."""
    from spx.platform.lifecycle import nothing_to_resume

    settings = _settings(store, tracking_uri, address)
    with _open_store(store) as db:  # before Ray and the driver's imports: a no-op is quick
        sweep = db.get_sweep(name)
        trials = db.trials(sweep.id)
    if nothing_to_resume(sweep, trials, retry_failed):
        again = sum(t.status == "FAILED" for t in trials)
        hint = f" (--retry-failed runs its {again} failed again)" if again else ""
        out.print(
            f"sweep {_quote(name)} already completed ({_end_counts(trials)} of {len(trials)}): "
            f"nothing to resume{hint}",
            markup=False,
            highlight=False,
        )
        return
    from spx.platform.driver import resume_sweep

    result = resume_sweep(name, settings, lambda spec: _display(spec, plain), retry_failed)
    _finish(result, settings)


@sweep_app.command("replay")
def replay(
    name: str,
    new_name: Annotated[
        str | None, typer.Option("--name", help="the new sweep's name (default NAME-replay)")
    ] = None,
    store: Store_ = None,
    tracking_uri: Tracking = None,
    address: Address = None,
    plain: Plain = False,
) -> None:
    """Run a sweep's exact trial configs again, in order, as a new sweep."""
    from spx.platform.driver import launch as run_sweep
    from spx.platform.replay import replay_spec

    settings = _settings(store, tracking_uri, address)
    spec, text = replay_spec(_open_store(store), name, new_name or f"{name}-replay")
    result = run_sweep(spec, text, settings, _display(spec, plain))
    _finish(result, settings)


@sweep_app.command("list")
def list_sweeps(store: Store_ = None, as_json: AsJson = False) -> None:
    """List the sweeps in the store."""
    from spx.platform.views import sweep_dict, to_json

    db = _open_store(store)
    rows = [sweep_dict(s, db.trials(s.id)) for s in db.list_sweeps()]
    if as_json:
        write_text(to_json(rows))
        return
    keys = ["name", "task", "method", "status", "trials", "created_at"]
    cells = [[r[k] for k in keys] for r in rows]
    if is_terminal(out):  # seconds are enough to read; a pipe gets the stored time whole
        cells = [[*c[:-1], (c[-1] or "")[:19]] for c in cells]
    print_table(out, [*keys[:-1], "created"], cells)


@sweep_app.command("status")
def status(
    name: str,
    store: Store_ = None,
    as_json: AsJson = False,
    watch: Annotated[bool, typer.Option("--watch", help="refresh until the sweep ends")] = False,
    interval: Annotated[float, typer.Option(help="seconds between refreshes")] = 2.0,
) -> None:
    """One sweep's state and trial counts."""
    from spx.platform.views import sweep_dict, to_json

    if watch:
        from spx.cli_ops import watch as watch_sweep

        if as_json:
            raise ConfigError("choose one of --json and --watch", field="--watch", value=True)
        raise typer.Exit(watch_sweep(name, store, interval))
    db = _open_store(store)
    sweep = db.get_sweep(name)
    data = sweep_dict(sweep, db.trials(sweep.id))
    if as_json:
        write_text(to_json(data))
        return
    counts = ", ".join(f"{k.lower()} {v}" for k, v in sorted(data["counts"].items()))
    line = f"{name}: {data['status']}, {data['trials']} trials ({counts or 'none'})"
    out.print(line, markup=False, highlight=False)


@sweep_app.command("show")
def show(
    name: str,
    store: Store_ = None,
    as_json: AsJson = False,
    pareto: Annotated[
        bool, typer.Option("--pareto", help="only the completed trials on the Pareto front")
    ] = False,
) -> None:
    """A sweep and every trial: number, status, params, final metrics; where its trials'
    weights started from (init.from), above the table."""
    from spx.platform import lineage
    from spx.platform.views import seed_groups, sweep_dict, to_json, trial_dict

    db = _open_store(store)
    sweep = db.get_sweep(name)
    trials = db.trials(sweep.id)
    metrics = ["val/loss", "val/acc", "model/sparsity", "model/params_avg"]
    if pareto:
        trials, objectives = _pareto(sweep, trials)
        metrics = [*objectives, *(m for m in metrics if m not in objectives)]
    varied = _varied(trials)
    groups = [] if pareto else seed_groups(trials, varied, metrics[:2])
    starts = lineage.lineages(trials)
    if as_json:
        data = {"sweep": sweep_dict(sweep, trials), "trials": [trial_dict(t) for t in trials]}
        if starts:
            data["lineage"] = starts
        if groups:
            data["over_seeds"] = groups
        write_text(to_json(data))
        return
    rows = []
    for t in trials:
        m = t.metrics or {}
        cells = [m[k] if isinstance(m.get(k), int | float) else None for k in metrics]
        rows.append([t.number, str(t.status), *(t.params.get(k) for k in varied), *cells])
    for line in map(lineage.describe, starts):  # a pipe carries the table alone
        if is_terminal(out):
            out.print(line, markup=False, highlight=False)
        else:
            typer.echo(line, err=True)
    print_table(out, ["trial", "status", *varied, *metrics], rows)
    if groups and not is_terminal(out):  # a pipe carries one table
        typer.echo("note: the means over seeds are in --json (over_seeds)", err=True)
    elif groups:
        keys = [k for k in groups[0] if k not in ("n", *metrics) and not k.endswith("_std")]
        means = [f"{m} (mean ± std)" for m in metrics[:2]]
        over = [
            [*(g[k] for k in keys), g["n"], *(_mean_std(g[m], g[f"{m}_std"]) for m in metrics[:2])]
            for g in groups
        ]
        print_table(out, [*keys, "seeds", *means], over, title="completed trials over seeds")


def _mean_std(mean: float | None, std: float | None) -> str:
    if mean is None:
        return ""
    return f"{mean:.4g}" if std is None else f"{mean:.4g} ± {std:.2g}"


def _pareto(sweep, trials) -> tuple[list, list[str]]:
    """The completed trials no other beats on every objective, best first on the first."""
    import pandas as pd

    from spx.dashboards.pareto import pareto_front

    done = [t for t in trials if t.status == "COMPLETED"]
    goals = {m: "min" if goal == "minimize" else "max" for m, goal in _objectives(sweep)}
    rows = [{m: (t.metrics or {}).get(m) for m in goals} for t in done]
    frame = pd.DataFrame(rows, columns=list(goals), index=range(len(done)), dtype=float)
    front = pareto_front(frame, goals)  # type: ignore[arg-type]
    return [done[i] for i in front.index], list(goals)


def _objectives(sweep) -> list[tuple[str, str]]:
    """The (metric, goal) objectives of a stored sweep. Its spec text passed the full
    parser at launch; this reads the one key with the YAML loader only, since the parser's
    imports (torch among them) take longer than the whole of ``show --pareto`` otherwise."""
    from spx.platform.limits import load_yaml

    raw = (load_yaml(sweep.spec_text) or {}).get("objective") or {}
    return [
        (o.get("metric", "val/loss"), o.get("goal", "minimize"))  # sweep_models.Objective's
        for o in (raw if isinstance(raw, list) else [raw])
    ]


@sweep_app.command("export")
def export(
    name: str,
    output: Annotated[Path, typer.Option("-o", "--output", help="file to write")],
    fmt: Annotated[
        str | None, typer.Option("--format", help="csv or json (default: by suffix)")
    ] = None,
    store: Store_ = None,
    force: Force = False,
) -> None:
    """Write the trials with their params and final metrics as CSV or JSON."""
    from spx.platform.paths import check_output, write_output
    from spx.platform.views import flat_rows, to_csv, to_json

    kind = (fmt or output.suffix.lstrip(".") or "csv").lower()
    if kind not in {"csv", "json"}:
        raise ConfigError("export format must be csv or json", field="--format", value=kind)
    check_output(output, force)
    db = _open_store(store)
    rows = flat_rows(db.trials(db.get_sweep(name).id))
    write_output(output, to_csv(rows) if kind == "csv" else to_json(rows), force)
    out.print(f"wrote {len(rows)} trials to {output}")


@sweep_app.command("export-model")
def export_model(
    name: str,
    output: Annotated[Path, typer.Option("-o", "--output", help="folder to write")],
    trial: Annotated[
        int | None, typer.Option("--trial", help="trial number (default: the best)")
    ] = None,
    mlflow_model: Annotated[
        bool, typer.Option("--mlflow/--no-mlflow", help="also log it as an MLflow model")
    ] = True,
    store: Store_ = None,
    tracking_uri: Tracking = None,
    force: Force = False,
) -> None:
    """Save a trial's model (masks applied; OTO/channel/nodes as the compact subnetwork)
    as safetensors + spx-model.json, and log it as an MLflow logged model of its run."""
    from spx.platform.driver import outcome
    from spx.platform.export import export_trial, register
    from spx.platform.settings import mask_url
    from spx.platform.spec import parse_spec

    settings = _settings(store, tracking_uri)
    db = _open_store(store)
    sweep = db.get_sweep(name)
    if trial is None:
        spec = parse_spec(sweep.spec_text, name=sweep.name)
        best = outcome(db, name, spec.objectives[0].metric, spec.objectives[0].goal).best
        if best is None:
            raise SpxError(f"sweep {name!r} has no completed trial to export")
        chosen = best
    else:
        found = [t for t in db.trials(sweep.id) if t.number == trial]
        if not found:
            raise ConfigError(f"sweep {name!r} has no such trial", field="--trial", value=trial)
        chosen = found[0]
    done = export_trial(settings, sweep, chosen, output, force)
    full = done.manifest["full"]
    line = f"wrote trial {chosen.number}'s masked model to {output}: " + _sizes(full)
    if "compact" in done.manifest:
        line = (
            f"wrote trial {chosen.number}'s compact subnetwork to {output}: "
            f"{_sizes(done.manifest['compact'])} (the masked full model: {_sizes(full)})"
        )
    out.print(line)
    if mlflow_model and chosen.mlflow_run_id:
        try:
            model_id = register(settings.tracking_uri, chosen.mlflow_run_id, output, done.manifest)
        except Exception as exc:  # the export on disk stands even when MLflow is away
            out.print(f"[yellow]MLflow did not take the model: {mask_url(str(exc))[:300]}[/yellow]")
        else:
            out.print(f"logged as MLflow model {model_id} (run {chosen.mlflow_run_id})")


def _sizes(counts: dict[str, int]) -> str:
    return (
        f"{counts['nonzero']} nonzero of {counts['params']} parameters, "
        f"{counts['flops']} multiply-adds per example"
    )


register_ui_command(app)
register_ops_commands(sweep_app)  # stop, logs, repair, sync: listed after the commands above


def main() -> None:
    from spx.platform.settings import mask_url
    from spx.secrets import exec_without_secrets, mask_output, masked_traceback

    exec_without_secrets(_options_of)  # a password in --store & co. leaves the command line
    mask_output()
    try:
        code = app(standalone_mode=False)
        sys.stdout.flush()  # here, where a reader that has gone is a quiet exit 0
    except BrokenPipeError:
        closed_pipe()
    except SpxError as exc:
        Console(stderr=True, soft_wrap=True).print(
            Text.assemble(("error", "red"), ": ", mask_url(str(exc))), highlight=False
        )
        sys.exit(exc.exit_code)
    except (KeyboardInterrupt, typer.Abort):
        Console(stderr=True).print("interrupted")
        sys.exit(130)
    except typer.TyperException as exc:  # typer's own click's errors: bad usage, exit 2
        exc.message = mask_url(exc.message)  # "unexpected extra argument (URL)" echoes it
        show = getattr(exc, "show", None)
        if show is not None:
            show()
        else:
            Console(stderr=True).print(f"error: {exc.message}", highlight=False, markup=False)
        sys.exit(exc.exit_code)
    except Exception as exc:  # a bug: its traceback, but never a password (a log may keep it)
        sys.stderr.write(masked_traceback(exc))
        sys.exit(1)
    sys.exit(code if isinstance(code, int) else 0)


def _options_of(args: list[str]) -> set[str]:
    """The options the (sub)command that ``args`` name takes."""
    command = typer.main.get_command(app)
    for arg in args:  # down the groups (typer's own click: no click.Group to test for)
        sub = getattr(command, "commands", None)
        if sub is None:
            break
        if arg in sub:
            command = sub[arg]
        elif not arg.startswith("-"):
            return set()
    if getattr(command, "commands", None) is not None:
        return set()
    return {opt for p in command.params for opt in (*p.opts, *p.secondary_opts)}
