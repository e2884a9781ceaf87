"""The docstring examples of every kernel module run and pass."""

import doctest
import importlib

import pytest
import torch

MODULES = [
    "aggregate",
    "chunking",
    "compress",
    "feedback",
    "nm",
    "packing",
    "quant",
    "semistructured",
    "topk",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    module = importlib.import_module(f"spx.kernels.{name}")
    result = doctest.testmod(module, extraglobs={"torch": torch}, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0
