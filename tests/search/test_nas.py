"""NAS sweeps: the variant axis, the methods' arms, and what a NAS trial checks first."""

from __future__ import annotations

import pytest

from spx.errors import ConfigError
from spx.platform.spec import parse_spec, resolve_trials
from spx.search.strategies import strategy_class
from spx.workers.config import TrialConfig


def test_a_variant_sets_full_keys_across_prefixes():
    cfg = TrialConfig.from_flat(
        "digits-cnn",
        {"prune.sparsity": 0.5, "variant": {"nas.method": "darts", "prune.method": "magnitude"}},
    )
    assert (cfg.nas.method, cfg.prune.method, cfg.prune.sparsity) == ("darts", "magnitude", 0.5)


def test_a_prefix_mapping_still_sets_keys_below_it():
    cfg = TrialConfig.from_flat("digits-mlp", {"prune": {"method": "magnitude", "sparsity": 0.8}})
    assert (cfg.prune.method, cfg.prune.sparsity) == ("magnitude", 0.8)


def test_a_misspelt_prefix_is_still_an_unknown_key_with_a_hint():
    with pytest.raises(ConfigError) as err:
        TrialConfig.from_flat("digits-mlp", {"prnue": {"method": "magnitude"}})
    assert err.value.field == "prnue.method"
    assert "prune.method" in str(err.value)


SPEC = """
name: nas-preset
task: digits-cnn
method: dass
fixed:
  train.steps: 20
  prune.method: magnitude
  prune.sparsity: 0.9
  nas.search_steps: 5
parameters:
  train.seed: {values: [0, 1, 2]}
"""


def test_a_nas_method_runs_its_arms_for_every_point_of_the_grid():
    configs = resolve_trials(parse_spec(SPEC))
    arms = [(c.train.seed, c.nas.method) for c in configs]
    assert len(configs) == 3 * len(strategy_class("dass").arms)
    assert arms[:2] == [(0, "dass"), (0, "darts")]  # arms side by side within a seed
    assert {c.prune.sparsity for c in configs} == {0.9}


def test_a_nas_method_needs_values_not_ranges():
    spec = SPEC.replace("train.seed: {values: [0, 1, 2]}", "train.lr: {min: 0.001, max: 0.01}")
    with pytest.raises(ConfigError) as err:
        parse_spec(spec)
    assert err.value.field == "parameters.train.lr"
