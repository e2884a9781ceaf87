"""The strategy registry is the one list of names: validation, the schema and the NAS
pipelines read it."""

from __future__ import annotations

import typing

import pytest

from spx.errors import ConfigError
from spx.platform.schema import sweep_schema
from spx.platform.spec import parse_spec, resolve_trials
from spx.search.base import Suggestion
from spx.search.nas import PIPELINES
from spx.search.registry import SearchStrategy, StrategyContext, register
from spx.search.strategies import STRATEGIES
from spx.workers.config import NasConfig

HEAD = "name: s\ntask: digits-mlp\n"


class Once(SearchStrategy):
    """Every axis's first value, once."""

    name = "once"
    enumerates = True

    def __init__(self, params: dict):
        self.params, self.total, self.asked = params, 1, False

    @classmethod
    def from_context(cls, ctx: StrategyContext) -> Once:
        return cls({k: axis.values[0] for k, axis in ctx.space.items()})  # type: ignore[union-attr]

    def ask(self) -> Suggestion | None:
        if self.asked:
            return None
        self.asked = True
        return Suggestion(0, self.params)


@pytest.fixture
def once():
    before = dict(STRATEGIES)
    register(Once)
    yield Once.name
    STRATEGIES.clear()
    STRATEGIES.update(before)


def test_a_registered_strategy_is_a_method_and_in_the_schema_with_no_other_edit(once):
    spec = parse_spec(HEAD + f"method: {once}\nparameters: {{model.width: {{values: [8, 16]}}}}\n")
    assert [c.model.width for c in resolve_trials(spec)] == [8]
    method = sweep_schema()["properties"]["method"]
    assert method["enum"] == sorted(STRATEGIES) and once in method["enum"]
    assert "once: Every axis's first value, once. [enumerates the space]" in method["description"]


def test_its_flags_are_what_validation_applies(once):
    with pytest.raises(ConfigError) as info:  # enumerates: a range is refused, by name
        parse_spec(HEAD + f"method: {once}\nparameters: {{train.lr: {{min: 0.1, max: 0.2}}}}\n")
    assert info.value.field == "parameters.train.lr"
    assert "needs a list of values" in str(info.value)


def test_an_unknown_method_lists_every_registered_one():
    with pytest.raises(ConfigError) as info:
        parse_spec(HEAD + "method: hillclimb\n")
    assert info.value.field == "method"
    assert f"choose one of {sorted(STRATEGIES)}" in str(info.value)
    assert "halton" in str(info.value)


def test_the_schema_lists_the_shipped_strategies():
    assert sweep_schema()["properties"]["method"]["enum"] == sorted(STRATEGIES)
    assert {"grid", "random", "tpe", "cmaes", "nsga2", "qmc", "halton"} <= set(STRATEGIES)


def test_a_name_is_registered_once():
    class Other(Once):
        name = "grid"

    with pytest.raises(ValueError, match="already registered"):
        register(Other)

    class Nameless(SearchStrategy):
        pass

    with pytest.raises(TypeError, match="name"):
        register(Nameless)


def test_every_nas_pipeline_a_trial_may_name_has_an_entry():
    methods = typing.get_args(NasConfig.model_fields["method"].annotation)
    assert set(PIPELINES) == set(methods) - {"none"}
