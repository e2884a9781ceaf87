"""The report reads right: a line per config (seeds averaged, n shown, the legend naming
the config), an objective-vs-trial plot for an adaptive search, and no sparsity plots for
a dense sweep; in the HTML and in the PNGs the MLflow parent run gets."""

from __future__ import annotations

import re

import matplotlib.figure
import numpy as np
import pandas as pd
import pytest

from spx.dashboards.frames import Sweep
from spx.dashboards.plots import accuracy_vs_sparsity_plot
from spx.dashboards.report import DENSE_LINE, HISTORY, build_plots, objectives, write_report
from spx.platform.store import Store, SweepStatus, TrialStatus
from spx.search.strategies import names

SEEDS = (0, 1, 2)


def acc_of(method: str, sparsity: float, seed: int) -> float:
    return 0.9 - (0.1 if method == "wanda" else 0.2) * sparsity + 0.01 * (seed - 1)


def seed_sparse(store: Store) -> None:
    """magnitude and wanda x sparsity 0.5 and 0.9 x 3 seeds, trials in seed-major order
    (so one line through every trial of a method zig-zags)."""
    sweep = store.create_sweep("groups", task="t", method="grid", spec_text="", spec_hash="0")
    number = 0
    for seed in SEEDS:
        for method in ("magnitude", "wanda"):
            for sparsity in (0.5, 0.9):
                params = {
                    "prune.method": method,
                    "prune.sparsity": sparsity,
                    "train.seed": seed,
                    "model.width": 32,
                }
                trial = store.add_trial(sweep.id, number, params)
                acc = acc_of(method, sparsity, seed)
                final = {"val/acc": acc, "val/loss": 1 - acc, "model/sparsity": sparsity}
                final["model/params"] = 1000 * (1 - sparsity)
                store.update_trial(trial.id, status=TrialStatus.COMPLETED, metrics=final)
                store.upsert_metrics(
                    trial.id,
                    [(s, "model/sparsity", sparsity * s / 30 + 0.001 * seed) for s in (10, 20, 30)],
                )
                number += 1
    store.update_sweep(sweep.id, status=SweepStatus.COMPLETED, finished=True)


@pytest.fixture
def legends(monkeypatch):
    """The legend texts of every PNG to_png saves, by file stem."""
    seen: dict[str, list[str]] = {}
    save = matplotlib.figure.Figure.savefig

    def spy(fig, path, *args, **kwargs):
        legend = fig.axes[0].get_legend()
        seen[path.stem] = [t.get_text() for t in legend.get_texts()] if legend else []
        return save(fig, path, *args, **kwargs)

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", spy)
    return seen


def test_one_line_per_config_with_seeds_averaged(store, store_url, tmp_path, legends):
    seed_sparse(store)
    out = write_report("groups", tmp_path / "r.html", store_url, png_dir=tmp_path / "png")
    with Sweep.load("groups", store_url) as sw:
        plots, _ = build_plots(sw.trials_df(), sw.history_df(HISTORY))
    by_key = {p.key: p for p in plots}

    accuracy = by_key["accuracy_vs_sparsity"]
    assert [s.name for s in accuracy.series] == [
        "prune.method=magnitude (n=3)",
        "prune.method=wanda (n=3)",
    ]
    for s, method in zip(accuracy.series, ("magnitude", "wanda"), strict=True):
        assert s.x == [0.5, 0.9]  # one point per sparsity, not one per trial
        means = [np.mean([acc_of(method, x, seed) for seed in SEEDS]) for x in s.x]
        assert s.y == pytest.approx(means)
        assert np.subtract(s.high, s.y) == pytest.approx([0.01, 0.01])  # std over 3 seeds

    schedules = by_key["schedules"]
    assert [s.name for s in schedules.series] == [
        f"prune.method={m}, prune.sparsity={x} (n=3)"
        for m in ("magnitude", "wanda")
        for x in (0.5, 0.9)
    ]
    assert schedules.series[0].y == pytest.approx([0.5 * s / 30 + 0.001 for s in (10, 20, 30)])

    pareto = by_key["pareto"]
    assert len(pareto.series[0].x) == 4  # configs, not the 12 trials

    text = out.read_text()
    assert "prune.method=magnitude, prune.sparsity=0.9 (n=3)" in text
    assert not re.search(r'"name":\s*"trial \d', text)  # no legend names a bare trial
    assert legends["schedules"] == [s.name for s in schedules.series]
    assert legends["accuracy_vs_sparsity"] == [s.name for s in accuracy.series]
    assert not any(re.match(r"trial \d", t) for texts in legends.values() for t in texts)


def seed_search(store: Store, method: str, spec_text: str, losses: list[float]) -> None:
    sweep = store.create_sweep(
        f"search-{method}", task="t", method=method, spec_text=spec_text, spec_hash="0"
    )
    for number, loss in enumerate(losses):
        trial = store.add_trial(sweep.id, number, {"train.lr": 10 ** -(1 + number / 3)})
        status = TrialStatus.PRUNED if number == 2 else TrialStatus.COMPLETED
        store.update_trial(trial.id, status=status, metrics={"val/loss": loss, "val/acc": -loss})
    store.update_sweep(sweep.id, status=SweepStatus.COMPLETED, finished=True)


LOSSES = [0.9, 0.7, 0.2, 0.8, 0.5, 0.6]  # trial 2 was pruned early: not a best


@pytest.mark.parametrize("method", names(lambda c: c.adaptive))
def test_an_adaptive_search_plots_its_objective_per_trial_with_the_best_so_far(
    store, store_url, tmp_path, method
):
    seed_search(store, method, "objective: {metric: val/loss, goal: minimize}\n", LOSSES)
    text = write_report(f"search-{method}", tmp_path / "r.html", store_url).read_text()
    assert 'id="objective_vs_trial"' in text
    with Sweep.load(f"search-{method}", store_url) as sw:
        (plot, *_), _ = build_plots(sw.trials_df(), sw.history_df(HISTORY), objectives(sw.row))
    trials, pruned, best = plot.series
    assert trials.x == [0, 1, 3, 4, 5] and trials.y == [0.9, 0.7, 0.8, 0.5, 0.6]
    assert (pruned.x, pruned.y) == ([2], [0.2])
    assert best.y == [0.9, 0.7, 0.7, 0.5, 0.5] and best.shape == "hv"
    assert trials.text[0] == "train.lr=0.1"  # hovering a point names its config


def test_each_objective_of_a_multi_objective_search_gets_its_plot(store, store_url, tmp_path):
    spec = "objective:\n- {metric: val/loss}\n- {metric: val/acc, goal: maximize}\n"
    seed_search(store, "nsga2", spec, LOSSES)
    text = write_report("search-nsga2", tmp_path / "r.html", store_url).read_text()
    assert 'id="objective_vs_trial"' in text and 'id="objective_vs_trial_2"' in text
    with Sweep.load("search-nsga2", store_url) as sw:
        plots, _ = build_plots(sw.trials_df(), sw.history_df(HISTORY), objectives(sw.row))
    assert plots[1].series[-1].y == [-0.9, -0.7, -0.7, -0.5, -0.5]  # val/acc, maximised


@pytest.mark.parametrize("method", ["grid", "halton"])
def test_a_search_that_learns_nothing_gets_no_objective_plot(store, store_url, tmp_path, method):
    seed_search(store, method, "", LOSSES)
    text = write_report(f"search-{method}", tmp_path / "r.html", store_url).read_text()
    assert 'id="objective_vs_trial' not in text


def seed_dense_comm(store: Store) -> None:
    """A communication-strategy comparison: every trial dense, 2 strategies x 2 seeds."""
    sweep = store.create_sweep("comm", task="t", method="grid", spec_text="", spec_hash="0")
    number = 0
    for strategy, per_step in (("ddp", 4e5), ("diloco", 1e4)):
        for seed in (0, 1):
            params = {
                "prune.method": "none",
                "prune.sparsity": 0.0,
                "comm.strategy": strategy,
                "train.seed": seed,
            }
            trial = store.add_trial(sweep.id, number, params)
            loss = 0.5 + 0.1 * seed
            final = {"val/loss": loss, "val/acc": 1 - loss, "model/sparsity": 0.0}
            final["model/params"] = 1000
            store.update_trial(trial.id, status=TrialStatus.COMPLETED, metrics=final)
            rows = []
            for step in (10, 20):
                rows += [
                    (step, "model/sparsity", 0.0),
                    (step, "val/loss", loss * 20 / step),
                    (step, "comm/bytes_sent", per_step * step),
                ]
            store.upsert_metrics(trial.id, rows)
            number += 1


def test_a_dense_sweep_gets_one_line_instead_of_sparsity_plots(store, store_url, tmp_path):
    seed_dense_comm(store)
    text = write_report("comm", tmp_path / "r.html", store_url).read_text()
    assert 'id="accuracy_vs_sparsity"' not in text and 'id="schedules"' not in text
    assert text.count(DENSE_LINE) == 1
    assert 'id="comm"' in text
    with Sweep.load("comm", store_url) as sw:
        plots, _ = build_plots(sw.trials_df(), sw.history_df(HISTORY))
    comm = next(p for p in plots if p.key == "comm")
    assert [s.name for s in comm.series] == [
        "comm.strategy=ddp (n=2)",
        "comm.strategy=diloco (n=2)",
    ]
    assert comm.series[0].y == pytest.approx([1.1, 0.55])  # mean of the two seeds per step


def test_configs_that_no_line_can_join_are_points_per_method():
    """A random search over lr: every config is at one sparsity, so a line would join
    nothing; the configs are points, a series per method, each point naming its config."""
    trials = pd.DataFrame(
        {
            "number": range(4),
            "status": ["COMPLETED"] * 4,
            "params.prune.method": ["magnitude", "magnitude", "wanda", "wanda"],
            "params.prune.sparsity": [0.5, 0.9, 0.5, 0.9],
            "params.train.lr": [0.01, 0.002, 0.03, 0.004],
            "metrics.model/sparsity": [0.5, 0.9, 0.5, 0.9],
            "metrics.val/acc": [0.8, 0.7, 0.85, 0.75],
        }
    )
    plot = accuracy_vs_sparsity_plot(trials)
    assert [(s.name, s.mode, s.x) for s in plot.series] == [
        ("prune.method=magnitude", "markers", [0.5, 0.9]),
        ("prune.method=wanda", "markers", [0.5, 0.9]),
    ]
    assert plot.series[0].text == [
        "prune.method=magnitude, prune.sparsity=0.5, train.lr=0.01 (n=1)",
        "prune.method=magnitude, prune.sparsity=0.9, train.lr=0.002 (n=1)",
    ]
