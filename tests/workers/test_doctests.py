"""The docstring examples of the workers modules that carry the method registry run."""

import doctest
import importlib

import pytest

MODULES = ["config", "dst", "knobs", "lottery", "methods", "oto", "pruner", "schedules"]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    module = importlib.import_module(f"spx.workers.{name}")
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.attempted and result.failed == 0
