"""The method registry is the one list of sparsity methods: the trial config, its keys, the
JSON Schema and the README's key table follow it, and ``register`` refuses what would break
them."""

from __future__ import annotations

import re

import pytest
from helpers import REPO
from pydantic import Field

from spx.errors import ConfigError
from spx.platform.schema import sweep_schema
from spx.workers.config import TrialConfig, known_keys
from spx.workers.knobs import MethodKnobs
from spx.workers.methods import METHODS, Magnitude, register


def _documented(text: str) -> set[str]:
    """Every key the text shows in backticks, ``prune.{a,b}`` read as two keys."""
    keys: set[str] = set()
    for token in re.findall(r"`([^`\n]+)`", text):
        grouped = re.fullmatch(r"([\w.]+)\.\{([\w,]+)\}", token)
        if grouped:
            keys.update(f"{grouped[1]}.{k}" for k in grouped[2].split(","))
        else:
            keys.add(token)
    return keys


def test_the_readme_names_every_registered_method_and_each_of_its_knobs():
    text = (REPO / "README.md").read_text()
    keys = _documented("\n".join(line for line in text.splitlines() if line.startswith("| ")))
    knobs = {f"prune.{k}" for cls in METHODS.values() for k in cls.Knobs.model_fields}
    assert not knobs - keys, "README's key table lacks these knobs"
    start = text.index("`prune.method` is one of")
    listed = _documented(text[start : text.index("(", start)])
    assert set(METHODS) <= listed, "README's list of prune.method values lacks these"


@pytest.fixture
def registered():
    """A method with one knob, registered for one test."""

    class Top(Magnitude):
        """Keep the largest |w| (a test method)."""

        name = "test-top"

        class Knobs(MethodKnobs):
            top_margin: float = Field(0.5, ge=0, le=1, description="a test knob")

    before = dict(METHODS)
    register(Top)
    try:
        yield Top
    finally:
        METHODS.clear()
        METHODS.update(before)


def test_a_registered_method_brings_its_knobs_to_config_keys_and_schema(registered):
    cfg = TrialConfig.from_flat("digits-mlp", {"prune.method": "test-top", "prune.top_margin": 1})
    assert cfg.prune.top_margin == 1 and cfg.flat()["prune.top_margin"] == 1
    assert "prune.top_margin" in known_keys()
    assert TrialConfig.from_flat("digits-mlp", {}).prune.top_margin == 0.5  # every trial
    with pytest.raises(ConfigError) as err:
        TrialConfig.from_flat("digits-mlp", {"prune.top_margin": True}, "fixed.")
    assert (err.value.field, err.value.value) == ("fixed.prune.top_margin", True)
    prune = sweep_schema()["$defs"]["TrialConfig"]["$defs"]["PruneConfig"]
    method = prune["properties"]["method"]
    assert "test-top" in method["enum"]
    line = "test-top: Keep the largest |w| (a test method). [on prune.schedule] knobs: "
    assert line + "prune.top_margin" in method["description"]
    assert prune["properties"]["top_margin"]["description"] == "test-top: a test knob"


def test_once_unregistered_its_knobs_are_unknown_keys(registered):
    del METHODS["test-top"]
    with pytest.raises(ConfigError, match="unknown trial key") as err:
        TrialConfig.from_flat("digits-mlp", {"prune.top_margin": 0.1})
    assert err.value.field == "prune.top_margin"


def _method(name: str, **attrs):
    return type(name.title(), (Magnitude,), {"name": name, **attrs})


def test_register_refuses_flags_and_knobs_that_contradict_the_rest():
    class Clash(MethodKnobs):
        rounds: int = Field(3, ge=0, description="not the lottery's rounds")

    class Shared(MethodKnobs):
        sparsity: float = Field(0.1, description="a shared key")

    class Bare(MethodKnobs):
        margin: float = 0.5

    refused = {
        "gradients under ZeRO 1/2": _method("grads", needs_gradients=True),
        "a knob another method has": _method("clash", Knobs=Clash),
        "a shared key as a knob": _method("shared", Knobs=Shared),
        "a knob without a description": _method("bare", Knobs=Bare),
    }
    for why, cls in refused.items():
        with pytest.raises(TypeError):
            register(cls)
        assert cls.name not in METHODS, why
