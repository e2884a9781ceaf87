"""An Optuna study behind spx's ask/tell; the samplers spx registers are in samplers.py.

One Optuna study per sweep, named after it, in the storage the driver names (an RDB beside
the results store, so optuna-dashboard shows it live). A rebuilt strategy loads the study
(``load_if_exists``), suggests the trials it already handed out again, in order and with
their configs, and only then asks for new ones, so a resumed sweep continues the same study.

Trials are asked define-by-run: each axis is suggested in dependency order and only while
its conditions hold, so a conditional axis is absent from the trials where it is inactive.
A trial that breaks a constraint is never handed out: it is told FAIL with the user
attribute ``spx.skipped`` (the constraint's text) and the study is asked again; after
``MAX_SKIPS`` in a row, a seeded random draw that meets the constraints is enqueued
instead. So the spx number is not always the Optuna number: every trial handed out
carries its spx number in the user attribute ``spx.number`` (a study begun by an older
spx, without the study attribute ``spx.numbered``, keeps spx number = Optuna number).

>>> from optuna.samplers import TPESampler
>>> from spx.search.space import FloatRange
>>> s = OptunaSearch({"x": FloatRange(0, 1)}, 2, TPESampler(seed=0))
>>> first = s.ask()
>>> s.tell(first.number, first.params["x"] ** 2, Outcome.COMPLETED)
>>> s.ask().number, s.ask()
(1, None)
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Sequence
from typing import Any

import optuna
from optuna.samplers import BaseSampler
from optuna.trial import FrozenTrial, TrialState

from spx.errors import ConfigError
from spx.search.base import Goal, Outcome, Suggestion, Value
from spx.search.constraints import DRAWS, Constraints, check_draws, feasible_draw
from spx.search.space import Axis, Categorical, Conditions, FloatRange, Space, active, search_order
from spx.search.study_storage import open_storage

optuna.logging.set_verbosity(optuna.logging.WARNING)

_STATES = {
    Outcome.COMPLETED: TrialState.COMPLETE,
    Outcome.PRUNED: TrialState.PRUNED,
    Outcome.FAILED: TrialState.FAIL,
}
_PRIMITIVE = (type(None), bool, int, float, str)
NUMBERED = "spx.numbered"  # study attribute: its trials carry their spx number
NUMBER = "spx.number"  # trial attribute: the spx number of a trial handed out
SKIPPED = "spx.skipped"  # trial attribute: the constraint a skipped trial broke
MAX_SKIPS = 100
"""Constraint-breaking trials skipped in a row before a random draw is enqueued instead."""


class OptunaSearch:
    """An Optuna study driven by ask/tell; see the module docstring."""

    def __init__(
        self,
        space: Space,
        trials: int,
        sampler: BaseSampler,
        goals: Sequence[Goal] = ("minimize",),
        storage_url: str | None = None,
        study_name: str = "spx",
        conditions: Conditions = (),
        constraints: Constraints = Constraints(),
        seed: int = 0,
    ):
        self.total: int | None = trials
        self.space, self.conditions, self.constraints = space, conditions, constraints
        self.order = search_order(space, conditions)
        check_draws(space, conditions, constraints, seed)
        self.seed = seed
        self.study = optuna.create_study(
            storage=open_storage(storage_url),
            sampler=sampler,
            study_name=study_name,
            directions=list(goals),
            load_if_exists=True,
        )
        self.replay = self._handed_out()
        self.optuna_number = {i: t.number for i, t in enumerate(self.replay)}
        """spx trial number -> Optuna trial number."""
        self.asked = 0

    def ask(self) -> Suggestion | None:
        number = self.asked
        if number < len(self.replay):
            self.asked += 1
            return Suggestion(number, self._ordered(self._decode(self.replay[number].params)))
        if self.total is not None and number >= self.total:
            return None
        trial, params = self._feasible(number)
        trial.set_user_attr(NUMBER, number)
        self.optuna_number[number] = trial.number
        self.asked += 1
        return Suggestion(number, params)

    def tell(self, number: int, value: Value | None, outcome: Outcome) -> None:
        state = _STATES[outcome]
        values = _values(value) if state == TrialState.COMPLETE else None
        if state == TrialState.COMPLETE and values is None:
            state = TrialState.FAIL  # finished without a finite objective: nothing to learn
        self.study.tell(self.optuna_number[number], values, state, skip_if_finished=True)

    def _handed_out(self) -> list[FrozenTrial]:
        """The study's trials that spx handed out, in spx order (see the module docstring)."""
        trials = self.study.get_trials(deepcopy=False)
        if NUMBERED not in self.study.user_attrs:
            if trials:  # begun by an older spx: spx number = Optuna number
                return list(trials)
            self.study.set_user_attr(NUMBERED, True)
        for t in trials:  # asked, but the driver died before it was handed out or skipped
            if NUMBER not in t.user_attrs and t.state == TrialState.RUNNING:
                self.study.tell(t.number, state=TrialState.FAIL, skip_if_finished=True)
        out = sorted(
            (t for t in trials if NUMBER in t.user_attrs), key=lambda t: t.user_attrs[NUMBER]
        )
        assert [t.user_attrs[NUMBER] for t in out] == list(range(len(out))), "spx numbers"
        return out

    def _feasible(self, number: int) -> tuple[optuna.Trial, dict[str, Any]]:
        """A new trial whose config meets the constraints, skipping those that do not."""
        for _ in range(MAX_SKIPS + 1):
            trial = self.study.ask()
            params = self._suggest(trial)
            broken = self.constraints.broken(params)
            if broken is None:
                return trial, params
            trial.set_user_attr(SKIPPED, broken.text)
            self.study.tell(trial, state=TrialState.FAIL)
        # The sampler keeps proposing what the constraints forbid: enqueue a random draw
        # that meets them (seeded by the sweep seed and the spx number, so a rerun agrees).
        rng = random.Random(f"spx-optuna-fallback:{self.seed}:{number}")
        fallback = feasible_draw(self.space, self.conditions, self.constraints, rng)
        if fallback is None:
            raise ConfigError(
                f"trial {number}: neither the sampler nor {DRAWS} random draws meet the "
                "constraints; widen the ranges or loosen the constraints",
                field="constraints",
            )
        self.study.enqueue_trial(self._encode(fallback))
        trial = self.study.ask()
        return trial, self._suggest(trial)

    def _suggest(self, trial: optuna.Trial) -> dict[str, Any]:
        """Define-by-run: each active axis in dependency order (parents first)."""
        params: dict[str, Any] = {}
        for key in self.order:
            if active(key, params, self.conditions):
                params[key] = _suggest(trial, key, self.space[key])
        return self._ordered(params)

    def _ordered(self, params: dict[str, Any]) -> dict[str, Any]:
        return {k: params[k] for k in self.space if k in params}

    def _decode(self, params: dict[str, Any]) -> dict[str, Any]:
        return {k: json.loads(v) if _needs_json(self.space[k]) else v for k, v in params.items()}

    def _encode(self, params: dict[str, Any]) -> dict[str, Any]:
        return {
            k: json.dumps(v, sort_keys=True) if _needs_json(self.space[k]) else v
            for k, v in params.items()
        }


def _suggest(trial: optuna.Trial, name: str, axis: Axis) -> Any:
    if isinstance(axis, Categorical):
        if _needs_json(axis):
            choices = [json.dumps(v, sort_keys=True) for v in axis.values]
            return json.loads(trial.suggest_categorical(name, choices))
        return trial.suggest_categorical(name, axis.values)
    if isinstance(axis, FloatRange):
        return trial.suggest_float(name, axis.low, axis.high, log=axis.log)
    return trial.suggest_int(name, axis.low, axis.high, log=axis.log)


def _needs_json(axis: Any) -> bool:
    return isinstance(axis, Categorical) and not all(isinstance(v, _PRIMITIVE) for v in axis.values)


def _values(value: Value | None) -> list[float] | None:
    if value is None:
        return None
    values = [float(v) for v in (value if isinstance(value, tuple) else (value,))]
    return values if all(math.isfinite(v) for v in values) else None
