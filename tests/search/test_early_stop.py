from __future__ import annotations

import pytest

from spx.search.base import Outcome
from spx.search.early_stop import StopRule, build_stopper


def run(stopper, curves: dict[int, list[float]], every: int = 10) -> dict[int, int | None]:
    """Feed each trial's curve in turn; the step it was stopped at (None: ran to the end)."""
    stopped: dict[int, int | None] = {}
    for number, curve in curves.items():
        stopped[number] = None
        for i, value in enumerate(curve, start=1):
            if stopper.should_stop(number, i * every, value):
                stopped[number] = i * every
                break
        stopper.finish(number, Outcome.COMPLETED if stopped[number] is None else Outcome.PRUNED)
    return stopped


GOOD = [0.9, 0.5, 0.3, 0.2, 0.1, 0.05, 0.04, 0.03]
BAD = [2.3, 2.3, 2.29, 2.29, 2.28, 2.28, 2.27, 2.27]


@pytest.mark.parametrize("rule", list(StopRule))
def test_each_rule_stops_the_obviously_bad_trials_after_grace(rule):
    stopper = build_stopper(rule, "minimize", grace=20, reduction=2, max_steps=80)
    curves = {0: GOOD, 1: GOOD, 2: GOOD, 3: BAD, 4: BAD, 5: BAD}
    stopped = run(stopper, curves)
    assert stopped[0] is None and stopped[1] is None and stopped[2] is None
    cut = [stopped[bad] for bad in (3, 4, 5) if stopped[bad] is not None]
    assert all(20 <= step < 80 for step in cut)
    # Hyperband splits trials into brackets; a bad trial alone in its bracket runs on.
    assert len(cut) == 3 if rule != StopRule.HYPERBAND else len(cut) >= 1, stopped


def test_direction_follows_the_goal():
    stopper = build_stopper(StopRule.ASHA, "maximize", grace=10, reduction=2)
    assert not stopper.should_stop(0, 10, 0.9)
    assert stopper.should_stop(1, 10, 0.1)
    assert not stopper.should_stop(2, 10, 0.95)


def test_a_step_reported_twice_is_judged_once():
    stopper = build_stopper(StopRule.ASHA, "minimize", grace=10, reduction=2)
    assert not stopper.should_stop(0, 10, 0.1)
    assert stopper.should_stop(1, 10, 0.9)
    assert not stopper.should_stop(1, 10, 0.9)  # a retried attempt re-reports step 10
    stopper.finish(1, Outcome.FAILED)
    stopper.finish(7, Outcome.FAILED)  # never reported: nothing to do
