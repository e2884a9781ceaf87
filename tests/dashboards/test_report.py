"""The HTML report and its PNGs, from a store holding a sweep with every kind of data:
pruning methods, a Journey-Matters law to fit, and communication history."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from helpers import load_test_module

from spx.dashboards.frames import Sweep
from spx.dashboards.plots import fit_band_plot
from spx.dashboards.report import (
    HISTORY,
    arm_summary,
    build_plots,
    render_report,
    scaling_section,
    write_report,
)
from spx.dashboards.scaling import fit_scaling_law
from spx.platform.store import Store, TrialStatus

_compare = load_test_module("dashboards/test_compare.py", "spx_tests_compare_for_report")

PLOTS = {"accuracy_vs_sparsity", "pareto", "comm", "schedules"}
SCALING = {"scaling_fit", "scaling_fit_chinchilla"}  # journey's curve, chinchilla's


def law(n_avg: float, tokens: float) -> float:
    return 1.2 + 40.0 / n_avg**0.4 + 300.0 / tokens**0.35


def seed_rich(store: Store, name: str = "rich") -> None:
    """24 trials: dense and 50/75 % magnitude x 4 widths x 2 token budgets x 2 seeds, the
    loss from a known N_avg law (1 % noise), two comm strategies with a bytes history."""
    rng = np.random.default_rng(0)
    sweep = store.create_sweep(name, task="t", method="grid", spec_text="", spec_hash="0" * 64)
    number = 0
    for sparsity in (0.0, 0.5, 0.75):
        for width in (1e4, 3e4, 1e5):
            for tokens in (1e6, 4e6):
                for seed in (0, 1):
                    n_final = width * (1 - sparsity)
                    n_avg = (width + n_final) / 2
                    loss = law(n_avg, tokens) * (1 + 0.01 * rng.standard_normal())
                    strategy = "ddp" if width < 5e4 else "sparseloco"
                    params = {
                        "prune.method": "magnitude" if sparsity else "none",
                        "prune.sparsity": sparsity,
                        "train.seed": seed,
                        "model.width": int(width),
                        "train.steps": int(tokens / 1000),
                        "comm.strategy": strategy,
                    }
                    trial = store.add_trial(sweep.id, number, params)
                    store.update_trial(
                        trial.id,
                        status=TrialStatus.COMPLETED,
                        metrics={
                            "val/loss": loss,
                            "val/acc": 1 / loss,
                            "model/sparsity": sparsity,
                            "model/params": n_final,
                            "model/params_avg": n_avg,
                            "data/tokens": tokens,
                        },
                    )
                    per_step = 4e5 if strategy == "ddp" else 1e4
                    rows = []
                    for step in (10, 20, 30):
                        rows += [
                            (step, "model/sparsity", sparsity * step / 30),
                            (step, "val/loss", loss * 30 / step),
                            (step, "comm/bytes_sent", per_step * step),
                        ]
                    store.upsert_metrics(trial.id, rows)
                    number += 1


@pytest.fixture
def rich_url(store_url):
    with Store.open(store_url) as store:
        seed_rich(store)
    return store_url


def test_every_plot_is_drawn_and_the_fit_band_brackets_the_fit(rich_url, tmp_path):
    with Sweep.load("rich", rich_url) as sw:
        trials, history = sw.trials_df(), sw.history_df(HISTORY)
    plots, scaling = build_plots(trials, history)
    assert {p.key for p in plots} == PLOTS
    assert {p.key for p in scaling.plots} == SCALING
    assert "converged: True" in scaling.html
    fit = fit_scaling_law(trials, law="journey", bootstrap=30)
    band = fit_band_plot(trials, fit)
    curves = [s for s in band.series if s.low is not None]
    assert len(curves) == 2  # one per token budget
    for s in curves:
        assert all(
            lo <= y * (1 + 1e-9) and y <= hi * (1 + 1e-9)
            for lo, y, hi in zip(s.low, s.y, s.high, strict=True)
        )
    comm = next(p for p in plots if p.key == "comm")
    assert len(comm.series) == 18  # one line per config, its two seeds averaged
    assert comm.series[0].name == (
        "comm.strategy=ddp, model.width=10000, prune.method=none, prune.sparsity=0, "
        "train.steps=1000 (n=2)"
    )
    assert comm.series[0].x[-1] == pytest.approx(4e5 * 30)


def test_arms_are_summarised_over_seeds(rich_url):
    with Sweep.load("rich", rich_url) as sw:
        summary = arm_summary(sw.trials_df())
    assert summary is not None
    assert set(summary["seeds"]) == {2}  # every arm ran with both seeds
    assert len(summary) == 18  # 3 sparsities x 3 widths x 2 budgets
    assert summary["val/loss std"].max() < 0.1


def test_write_report_writes_html_and_pngs(rich_url, tmp_path):
    out = write_report("rich", tmp_path / "r.html", rich_url, png_dir=tmp_path / "png")
    text = out.read_text()
    for key in PLOTS | SCALING:
        assert f'id="{key}"' in text
    assert {p.stem for p in (tmp_path / "png").glob("*.png")} == PLOTS | SCALING
    assert all(p.stat().st_size > 5000 for p in (tmp_path / "png").glob("*.png"))


def test_the_scaling_section_fits_both_laws_and_gives_the_verdict(rich_url, tmp_path):
    text = write_report("rich", tmp_path / "r.html", rich_url).read_text()
    section = text[text.index("<h2>Scaling laws") : text.index("<h2>All trials")]
    assert "(journey: N_avg, tokens; chinchilla: final N, tokens)" in section
    assert 'id="scaling_fit"' in section and 'id="scaling_fit_chinchilla"' in section
    assert section.count("<th>identifiable</th>") == 2  # one coefficient table per law
    # Two token budgets cannot pin the token term: flagged, not hidden.
    assert "<td>beta</td><td>" in section and "<b>no</b>" in section
    assert "5 folds by config group (18 config groups), 36 of 36 trials predicted" in section
    assert "<b>Verdict:</b> journey predicts better" in section  # the data follow N_avg


def test_a_law_the_data_do_not_allow_gets_one_line_instead_of_a_plot():
    trials = _compare.sweep("journey", budgets=(1e9,)).drop(columns="metrics.model/params")
    trials["number"] = range(len(trials))
    section = scaling_section(trials)
    assert section.plots == []
    text = render_report("flat", trials, [], section)
    assert "<p class='no-fit'>journey law: not fitted: metrics.data/tokens: " in text
    assert "needs metrics.data/tokens to vary, but it has 1 distinct value" in text
    assert "<p class='no-fit'>chinchilla law: not fitted: the sweep records no model/params" in (
        text
    )
    assert "compare-laws: not run: journey and chinchilla not fitted" in text
    assert 'id="scaling_fit' not in text and "<th>identifiable</th>" not in text


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(
    _chromium() is None, reason="no chromium on this machine (apt install chromium)"
)
def test_the_report_renders_in_a_browser_without_errors(tmp_path):
    playwright = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    url = f"sqlite:///{tmp_path / 'spx.db'}"
    with Store.open(url) as store:
        seed_rich(store)
    out = write_report("rich", tmp_path / "r.html", url)
    errors: list[str] = []
    with playwright.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=_chromium(), args=["--no-sandbox"])
        try:
            page = browser.new_page()
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.goto(out.as_uri())
            page.wait_for_selector("#pareto .main-svg", timeout=30_000)
            points = {
                key: page.locator(f"#{key} .scatterlayer .point").count()
                + page.locator(f"#{key} .scatterlayer .js-line").count()
                for key in PLOTS | SCALING
            }
            page.screenshot(path=str(tmp_path / "report.png"), full_page=True)
        finally:
            browser.close()
    assert errors == []
    assert all(n > 0 for n in points.values()), points
    assert (tmp_path / "report.png").stat().st_size > 20_000
