"""Optuna samplers (TPE, CMA-ES, NSGA-II, QMC) behind spx's ask/tell.

One Optuna study per sweep, named after it, in the storage the driver names (an RDB beside
the results store, so optuna-dashboard shows it live). The spx trial number *is* the
Optuna trial number: a rebuilt strategy loads the study (``load_if_exists``), suggests the
trials it already holds again, in order and with their configs, and only then asks for
new ones, so a resumed sweep continues the same study.

>>> from spx.search.space import FloatRange
>>> s = OptunaSearch({"x": FloatRange(0, 1)}, 2, SAMPLERS["tpe"](0))
>>> first = s.ask()
>>> s.tell(first.number, first.params["x"] ** 2, Outcome.COMPLETED)
>>> s.ask().number, s.ask()
(1, None)
"""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import optuna
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)
from optuna.samplers import BaseSampler, CmaEsSampler, NSGAIISampler, QMCSampler, TPESampler
from optuna.trial import TrialState

from spx.errors import ConfigError
from spx.search.base import Goal, Outcome, Suggestion, Value
from spx.search.space import Categorical, FloatRange, Space
from spx.search.study_storage import open_storage

optuna.logging.set_verbosity(optuna.logging.WARNING)

SAMPLERS: dict[str, Callable[[int], BaseSampler]] = {
    # constant_liar: trials still running count as bad guesses, so parallel asks spread out.
    "tpe": lambda seed: TPESampler(seed=seed, multivariate=True, constant_liar=True),
    "cmaes": lambda seed: CmaEsSampler(seed=seed, warn_independent_sampling=False),
    "nsga2": lambda seed: NSGAIISampler(seed=seed),
    "qmc": lambda seed: _qmc(seed),
}
SINGLE_OBJECTIVE = {"cmaes"}
_STATES = {
    Outcome.COMPLETED: TrialState.COMPLETE,
    Outcome.PRUNED: TrialState.PRUNED,
    Outcome.FAILED: TrialState.FAIL,
}
_PRIMITIVE = (type(None), bool, int, float, str)


def _qmc(seed: int) -> BaseSampler:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return QMCSampler(scramble=True, seed=seed, warn_independent_sampling=False)


def check_space(method: str, space: Space, objectives: int) -> None:
    """Say, before anything runs, what the sampler ``method`` cannot search."""
    if method == "cmaes":
        bad = sorted(k for k, axis in space.items() if isinstance(axis, Categorical))
        if bad:
            raise ConfigError(
                f"CMA-ES searches numeric ranges only; give min/max for {', '.join(bad)} "
                "(or fix them, or use method: tpe)",
                field=f"parameters.{bad[0]}",
            )
    if method in SINGLE_OBJECTIVE and objectives > 1:
        raise ConfigError(
            f"{method} optimizes one objective; for {objectives} use nsga2 or tpe",
            field="objective",
        )


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
    ):
        self.total: int | None = trials
        self.distributions = {k: _distribution(axis) for k, axis in space.items()}
        # Optuna stores only primitive choices: a mapping value travels as its JSON text.
        self.as_json = {k for k, axis in space.items() if _needs_json(axis)}
        self.study = optuna.create_study(
            storage=open_storage(storage_url),
            sampler=sampler,
            study_name=study_name,
            directions=list(goals),
            load_if_exists=True,
        )
        self.replay = self.study.get_trials(deepcopy=False)
        self.asked = 0

    def ask(self) -> Suggestion | None:
        if self.asked < len(self.replay):
            old = self.replay[self.asked]
            self.asked += 1
            return Suggestion(old.number, self._decode(old.params))
        if self.total is not None and self.asked >= self.total:
            return None
        trial = self.study.ask(self.distributions)
        self.asked += 1
        return Suggestion(trial.number, self._decode(trial.params))

    def tell(self, number: int, value: Value | None, outcome: Outcome) -> None:
        state = _STATES[outcome]
        values = _values(value) if state == TrialState.COMPLETE else None
        if state == TrialState.COMPLETE and values is None:
            state = TrialState.FAIL  # finished without a finite objective: nothing to learn
        self.study.tell(number, values, state, skip_if_finished=True)

    def _decode(self, params: dict[str, Any]) -> dict[str, Any]:
        return {k: json.loads(v) if k in self.as_json else v for k, v in params.items()}


def _needs_json(axis: Any) -> bool:
    return isinstance(axis, Categorical) and not all(isinstance(v, _PRIMITIVE) for v in axis.values)


def _distribution(axis: Any) -> BaseDistribution:
    if _needs_json(axis):
        return CategoricalDistribution([json.dumps(v, sort_keys=True) for v in axis.values])
    if isinstance(axis, Categorical):
        return CategoricalDistribution(axis.values)
    if isinstance(axis, FloatRange):
        return FloatDistribution(axis.low, axis.high, log=axis.log)
    return IntDistribution(axis.low, axis.high, log=axis.log)


def _values(value: Value | None) -> list[float] | None:
    if value is None:
        return None
    values = [float(v) for v in (value if isinstance(value, tuple) else (value,))]
    return values if all(math.isfinite(v) for v in values) else None
