"""Early termination: Optuna's pruners decide, for every search method.

A :class:`PrunerStopper` keeps an in-memory Optuna study that mirrors the running trials
only for their intermediate values: each report is ``trial.report(value, step)`` and the
answer is ``trial.should_prune()``. ASHA is Optuna's successive halving, so it promotes
asynchronously: the first trials to reach a rung are compared with fewer rivals.

>>> stopper = build_stopper(StopRule.ASHA, "minimize", grace=10, reduction=2)
>>> stopper.should_stop(0, 10, 0.2), stopper.should_stop(1, 10, 0.9)
(False, True)
"""

from __future__ import annotations

from enum import StrEnum

import optuna
from optuna.pruners import BasePruner, HyperbandPruner, MedianPruner, SuccessiveHalvingPruner
from optuna.storages import InMemoryStorage
from optuna.trial import Trial, TrialState

from spx.search.base import Goal, Outcome

optuna.logging.set_verbosity(optuna.logging.WARNING)

MEDIAN_STARTUP_TRIALS = 3
"""Median stopping waits for this many finished trials before it stops any."""


class StopRule(StrEnum):
    ASHA = "asha"
    MEDIAN = "median"
    HYPERBAND = "hyperband"


def build_pruner(rule: StopRule, grace: int, reduction: int, max_steps: int | None) -> BasePruner:
    """``grace``: steps every trial runs before it can be stopped (the minimum resource)."""
    if rule == StopRule.ASHA:
        return SuccessiveHalvingPruner(min_resource=grace, reduction_factor=reduction)
    if rule == StopRule.HYPERBAND:
        return HyperbandPruner(
            min_resource=grace, max_resource=max_steps or "auto", reduction_factor=reduction
        )
    return MedianPruner(n_startup_trials=MEDIAN_STARTUP_TRIALS, n_warmup_steps=grace)


def build_stopper(
    rule: StopRule, goal: Goal, grace: int, reduction: int, max_steps: int | None = None
) -> PrunerStopper:
    return PrunerStopper(build_pruner(rule, grace, reduction, max_steps), goal)


class PrunerStopper:
    """An :class:`~spx.search.base.EarlyStopper` whose decisions are an Optuna pruner's."""

    def __init__(self, pruner: BasePruner, goal: Goal):
        # A fixed name: Hyperband assigns brackets by hashing it with the trial number.
        self.study = optuna.create_study(
            storage=InMemoryStorage(), study_name="spx-early-stop", pruner=pruner, direction=goal
        )
        self.trials: dict[int, Trial] = {}
        self.last: dict[int, tuple[int, float]] = {}
        """Per running trial: its last reported (step, value)."""

    def should_stop(self, number: int, step: int, value: float) -> bool:
        trial = self.trials.get(number)
        if trial is None:
            trial = self.trials[number] = self.study.ask()
        if number in self.last and step <= self.last[number][0]:
            return False  # a retried attempt re-reports steps the pruner already judged
        trial.report(value, step)
        self.last[number] = (step, value)
        return trial.should_prune()

    def finish(self, number: int, outcome: Outcome) -> None:
        trial = self.trials.pop(number, None)
        last = self.last.pop(number, None)
        if trial is None:
            return
        if outcome == Outcome.COMPLETED and last is not None:
            # Median stopping compares against finished trials' curves: keep this one.
            self.study.tell(trial, last[1], TrialState.COMPLETE)
        elif outcome == Outcome.PRUNED:
            self.study.tell(trial, state=TrialState.PRUNED)
        else:
            self.study.tell(trial, state=TrialState.FAIL)
