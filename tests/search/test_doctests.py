"""The docstring examples of the search modules run and pass."""

import doctest
import importlib

import pytest

MODULES = [
    "base",
    "constraints",
    "grid",
    "halton",
    "nas",
    "optuna_search",
    "presets",
    "random_search",
    "registry",
    "replicates",
    "samplers",
    "strategies",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    module = importlib.import_module(f"spx.search.{name}")
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.attempted and result.failed == 0
