"""Bounded sweep-file input: hostile files exit 2 at once, in little memory, naming the limit.

Each hostile file runs through the installed ``spx sweep validate`` under a small wrapper
process, so the peak resident memory measured (``RUSAGE_CHILDREN``) is spx's alone.
"""

from __future__ import annotations

import doctest
import importlib
import json
import subprocess
import sys
import textwrap

import pytest
from helpers import spx_exe

from spx.errors import ConfigError
from spx.platform.limits import MAX_NODES, load_yaml
from spx.platform.spec import parse_spec

MEASURE = textwrap.dedent(
    """
    import json, resource, subprocess, sys
    proc = subprocess.run(sys.argv[1:], capture_output=True, text=True)
    peak_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    print(json.dumps({"rc": proc.returncode, "err": proc.stderr, "peak_mb": peak_kb / 1024}))
    """
)
BOMB = "name: bomb\ntask: digits-mlp\nfixed:\n  model.width:\n" + "".join(
    f"    - &{c} [{', '.join([f'*{p}'] * 9 if p else ['lol'] * 9)}]\n"
    for p, c in zip(["", *"abcdefgh"], "abcdefghi", strict=True)
)
GRID = "name: grid\ntask: digits-mlp\nparameters:\n" + "".join(
    f"  {key}: {{values: [{', '.join(f'0.{i}1' for i in range(10))}]}}\n"
    for key in (
        "train.lr",
        "train.weight_decay",
        "train.momentum",
        "prune.sparsity",
        "prune.srste_decay",
        "prune.min_layer_fraction",
        "prune.rate",
        "prune.drop_fraction",
    )
)
DEEP = "name: deep\ntask: digits-mlp\nfixed: " + "[" * 5000 + "]" * 5000 + "\n"


def _validate(path, env=None) -> dict:
    cmd = [sys.executable, "-c", MEASURE, spx_exe(), "sweep", "validate", str(path)]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env, check=True)
    return json.loads(out.stdout)


@pytest.mark.parametrize(
    ("case", "expect"),
    [
        ("alias_bomb", f"the YAML expands to more than {MAX_NODES} values"),
        ("grid_of_10_8_points", "the grid has 100000000 points, more than the 100000 runs"),
        ("four_gigabytes", "sweep file is 4294967296 bytes, larger than the 1000000 bytes"),
        ("deep_nesting", "the YAML nests deeper than 64 levels"),
    ],
)
def test_hostile_file_exits_2_in_little_memory(case, expect, tmp_path):
    path = tmp_path / f"{case}.yaml"
    if case == "four_gigabytes":
        with path.open("wb") as f:
            f.truncate(4 * 1024**3)  # sparse: costs no disk
    else:
        path.write_text(
            {"alias_bomb": BOMB, "grid_of_10_8_points": GRID, "deep_nesting": DEEP}[case]
        )
    result = _validate(path)
    assert result["rc"] == 2, result["err"]
    assert expect in result["err"], result["err"]
    assert "Traceback" not in result["err"]
    assert result["peak_mb"] < 200, result
    assert len(result["err"]) < 400  # nothing echoed at length


def test_the_grid_cap_comes_from_spx_max_grid(tmp_path, monkeypatch):
    text = "name: g\ntask: digits-mlp\nparameters:\n  train.lr: {values: [0.1, 0.2, 0.3]}\n"
    text += "  train.seed: {values: [1, 2, 3, 4]}\n"
    monkeypatch.setenv("SPX_MAX_GRID", "11")
    with pytest.raises(ConfigError, match="the grid has 12 points, more than the 11 runs"):
        parse_spec(text)
    monkeypatch.setenv("SPX_MAX_GRID", "12")
    assert parse_spec(text).name == "g"
    monkeypatch.setenv("SPX_MAX_GRID", "many")
    with pytest.raises(ConfigError, match="SPX_MAX_GRID: must be a whole number"):
        parse_spec(text)


def test_replicate_seeds_count_against_the_grid_cap(monkeypatch):
    text = "name: g\ntask: digits-mlp\nparameters:\n  train.lr: {values: [0.1, 0.2, 0.3]}\n"
    monkeypatch.setenv("SPX_MAX_GRID", "8")
    with pytest.raises(ConfigError, match=r"3 points x 3 runs each"):
        parse_spec(text + "replicates: {seeds: [0, 1, 2]}\n")


def test_a_conditional_grid_is_counted_exactly(monkeypatch):
    text = textwrap.dedent(
        """
        name: c
        task: digits-mlp
        parameters:
          prune.method: {values: [magnitude, nm]}
          prune.nm: {values: ["2:4", "1:4", "4:8"]}
          train.lr: {values: [0.1, 0.2]}
        conditions:
          prune.nm: {prune.method: nm}
        """
    )
    monkeypatch.setenv("SPX_MAX_GRID", "7")  # 2 (magnitude) + 6 (nm): 8 points
    with pytest.raises(ConfigError, match="the grid has 8 points"):
        parse_spec(text)
    monkeypatch.setenv("SPX_MAX_GRID", "8")
    assert parse_spec(text).name == "c"


def test_anchors_within_the_budget_still_load():
    text = "base: &b {x: 1, y: [1, 2]}\nfirst: *b\nsecond: {<<: *b, x: 2}\n"
    assert load_yaml(text) == {
        "base": {"x": 1, "y": [1, 2]},
        "first": {"x": 1, "y": [1, 2]},
        "second": {"x": 2, "y": [1, 2]},
    }


def test_an_alias_inside_its_own_anchor_is_refused():
    with pytest.raises(ConfigError, match=r"alias \*a repeats a node that contains it"):
        load_yaml("a: &a [1, *a]\n")


def test_tags_are_refused_and_duplicate_keys_name_both_lines():
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_yaml("a: !!python/object/apply:os.system ['true']\n")
    with pytest.raises(ConfigError, match=r"^a: this key is given twice .*\(lines 1 and 3\)"):
        load_yaml("a: 1\nb: 0\na: 2\n")
    assert load_yaml("base: &b {x: 1}\nc: {<<: *b, x: 2}\n")["c"] == {"x": 2}  # a merge overrides


@pytest.mark.parametrize(
    "text, value",
    [
        ("yes", "yes"),  # YAML 1.1: True
        ("off", "off"),  # YAML 1.1: False
        ("2:4", "2:4"),  # YAML 1.1: 124 (base 60)
        ("010", 10),  # YAML 1.1: 8 (octal)
        ("1e-3", 0.001),  # YAML 1.1: the text '1e-3'
        ("2024-01-01", "2024-01-01"),  # YAML 1.1: a date
        ("0o17", 15),
        ("-0.5", -0.5),
        ("true", True),
        ("~", None),
    ],
)
def test_plain_scalars_are_read_by_yaml_1_2s_core_schema(text, value):
    loaded = load_yaml(f"k: {text}\n")["k"]
    assert loaded == value and type(loaded) is type(value)


def test_an_integer_past_pythons_digit_limit_is_bad_input():
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_yaml("a: " + "9" * 5000 + "\n")


def test_echoed_values_are_cut_to_about_200_characters():
    shared = ["lol"] * 9
    for _ in range(12):
        shared = [shared] * 9  # 9**12 strings if written out in full
    error = ConfigError("bad", field="fixed.model.width", value=shared)
    assert len(str(error)) < 260
    assert str(error).startswith("fixed.model.width: bad (got [[[[")
    assert str(ConfigError("bad", value=[1, "a"])) == "bad (got [1, 'a'])"  # short: as repr


@pytest.mark.parametrize(
    "name", ["spx.errors", "spx.platform.limits", "spx.platform.sizing", "spx.search.space"]
)
def test_docstring_examples(name):
    result = doctest.testmod(importlib.import_module(name))
    assert result.attempted and result.failed == 0
