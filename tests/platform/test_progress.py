"""The progress display counts each trial once, however many attempts it took."""

from __future__ import annotations

import io

from rich.console import Console

from spx.platform.progress import LiveDisplay, PlainDisplay


def _retried_sweep(display) -> None:
    """Three trials; trial 1's worker dies once and its retry completes (scheduler order)."""
    display.start("s", 3)
    for number in (0, 1, 2):
        display.started(number, {"train.seed": number})
    display.finished(0, "COMPLETED", 0.5, None)
    display.finished(1, "LOST", None, "WorkerCrashedError: died; retrying")
    display.started(1, {"train.seed": 1})
    display.finished(1, "COMPLETED", 0.25, None)
    display.finished(2, "FAILED", None, "TrialError: train/loss is nan")


def test_a_retried_trial_is_counted_once_in_the_plain_lines():
    out = io.StringIO()
    display = PlainDisplay("val/loss", "minimize", stream=out)
    _retried_sweep(display)
    done = [line.rsplit("[", 1)[1] for line in out.getvalue().splitlines() if "done]" in line]
    assert done == ["1/3 done]", "1/3 done]", "2/3 done]", "3/3 done]"]
    assert display.tally.counts == {"COMPLETED": 2, "FAILED": 1}
    assert display.tally.best == (1, 0.25)


def test_a_lost_trial_shows_as_lost_until_it_runs_again():
    display = PlainDisplay("val/loss", "minimize", stream=io.StringIO())
    display.start("s", 2)
    display.started(0, {})
    display.finished(0, "LOST", None, "died; retrying")
    assert display.tally.counts == {"LOST": 1} and display.tally.done() == 0
    display.started(0, {})
    assert display.tally.counts == {} and list(display.tally.running) == [0]


def test_the_live_panel_never_reads_more_done_than_trials():
    console = Console(file=io.StringIO(), width=120, force_terminal=False)
    display = LiveDisplay("val/loss", "minimize", concurrent=2, console=console)
    _retried_sweep(display)
    display.stop()
    assert display.tally.done() == 3
    assert "3/3 done" in console.file.getvalue() and "4/3" not in console.file.getvalue()


def test_a_resumed_sweep_counts_on_from_its_finished_trials():
    """Resuming 12 trials of which 4 ended: the first new end is [5/12 done], not [1/12]."""
    out = io.StringIO()
    display = PlainDisplay("val/loss", "minimize", stream=out)
    ended = {0: "COMPLETED", 1: "COMPLETED", 2: "PRUNED", 3: "FAILED"}
    display.start("s", 12, ended)
    display.started(4, {"train.seed": 4})
    display.finished(4, "COMPLETED", 0.5, None)
    lines = out.getvalue().splitlines()
    assert lines[0] == "sweep s: 12 trials, 4 already done"
    assert lines[-1].endswith("[5/12 done]")
    assert display.tally.counts == {"COMPLETED": 3, "PRUNED": 1, "FAILED": 1}
