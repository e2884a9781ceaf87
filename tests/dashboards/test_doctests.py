"""The docstring examples of the read side run and pass."""

import doctest
import importlib

import pytest

MODULES = [
    "spx.dashboards.columns",
    "spx.dashboards.compare",
    "spx.dashboards.frames",
    "spx.dashboards.lawfit",
    "spx.dashboards.pareto",
    "spx.dashboards.plots",
    "spx.dashboards.query",
    "spx.dashboards.scaling",
    "spx.platform.readonly",
    "spx.platform.views",
    "spx.search.nas",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0
