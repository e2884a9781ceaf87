"""A constraint may scale a key by a constant: ``train.steps == 40 * comm.inner_steps``."""

from __future__ import annotations

import pytest

from spx.errors import ConfigError
from spx.platform.spec import parse_spec, resolve_trials
from spx.search.constraints import Constraints, parse_constraints

SWEEP = """
name: pairs
task: code-gpt
method: grid
fixed: {comm.strategy: diloco, model.width: 32}
parameters:
  comm.inner_steps: {values: [15, 30, 60]}
  train.steps: {values: [600, 1200, 2400]}
resources: {workers_per_trial: 2, cpus_per_worker: 0.5}
"""


def test_a_factor_pairs_two_grids_on_their_diagonal():
    spec = parse_spec(SWEEP + "constraints: ['train.steps == 40 * comm.inner_steps']\n")
    pairs = [(c.comm.inner_steps, c.train.steps) for c in resolve_trials(spec)]
    assert pairs == [(15, 600), (30, 1200), (60, 2400)]


def test_a_factor_never_turns_a_boolean_into_a_number():
    rules = Constraints(parse_constraints(["2 * flag >= 2"]))
    assert rules.allow({"flag": 1}) and not rules.allow({"flag": True})


@pytest.mark.parametrize(
    "text, words",
    [
        ("train.steps == 40 * comm.inner_step", ["did you mean 'comm.inner_steps'"]),
        ("train.steps == 40 * 3", ["number times a trial key"]),
    ],
)
def test_a_bad_factor_names_the_constraint(text, words):
    with pytest.raises(ConfigError) as info:
        parse_spec(SWEEP + f"constraints: ['{text}']\n")
    assert info.value.field == "constraints[0]"
    assert all(w in str(info.value) for w in words), str(info.value)
