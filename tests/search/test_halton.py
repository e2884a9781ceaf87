"""Halton search: an even cover of each axis, decided by the seed, shown in full by validate."""

from __future__ import annotations

import math
import sys
from collections import Counter

import pytest

from spx.cli import main
from spx.search.constraints import Constraints, parse_constraints
from spx.search.halton import Halton
from spx.search.space import Categorical, FloatRange, IntRange


def _params(strategy) -> list[dict]:
    out = []
    while (s := strategy.ask()) is not None:
        out.append(s.params)
    return out


def test_each_axis_gets_one_point_per_slice_where_random_draws_would_clump():
    space = {
        "x": FloatRange(0.0, 1.0),  # base 2: 8 points, one per eighth
        "k": Categorical(("a", "b", "c")),  # base 3: 9 points, each value 3 times
        "w": IntRange(1, 5),  # base 5: 5 points, each whole number once
    }
    first = _params(Halton(space, trials=45, seed=3))
    assert sorted(int(p["x"] * 8) for p in first[:8]) == list(range(8))
    assert Counter(p["k"] for p in first[:9]) == {"a": 3, "b": 3, "c": 3}
    assert sorted(p["w"] for p in first[:5]) == [1, 2, 3, 4, 5]
    assert all(isinstance(p["w"], int) for p in first)


def test_the_seed_scrambles_the_points_and_a_log_range_stays_inside():
    space = {"lr": FloatRange(1e-4, 1e-1, log=True), "d": IntRange(1, 64, log=True)}
    a, b = _params(Halton(space, 16, seed=0)), _params(Halton(space, 16, seed=1))
    assert a != b and a == _params(Halton(space, 16, seed=0))
    assert all(1e-4 <= p["lr"] <= 1e-1 and 1 <= p["d"] <= 64 for p in a + b)
    decades = Counter(int(-math.log10(p["lr"])) for p in a[:9])
    assert set(decades) == {1, 2, 3}  # log-uniform: every decade of the range is visited


def test_points_that_break_a_constraint_are_skipped_for_the_next_ones():
    space = {"s": FloatRange(0.0, 1.0), "e": FloatRange(0.0, 1.0)}
    rules = Constraints(parse_constraints(["s < e"]))
    kept = _params(Halton(space, 10, seed=0, constraints=rules))
    assert len(kept) == 10 and all(p["s"] < p["e"] for p in kept)
    plain = Halton(space, 40, seed=0)
    assert kept == [p for p in _params(plain) if p["s"] < p["e"]][:10]


SWEEP = """
name: halton-demo
task: digits-mlp
method: halton
seed: 2
trials: 5
fixed: {train.steps: 10}
parameters:
  train.lr: {min: 1.0e-4, max: 3.0e-2, log: true}
  prune.method: {values: [none, magnitude]}
"""


def test_validate_shows_every_trial_launch_will_run(tmp_path, monkeypatch, capsys):
    (tmp_path / "halton.yaml").write_text(SWEEP)
    monkeypatch.setenv("SPX_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    argv = ["spx", "sweep", "validate", str(tmp_path / "halton.yaml"), "--show", "5"]
    monkeypatch.setattr(sys, "argv", argv)
    with pytest.raises(SystemExit) as exit_info:
        main()
    out = capsys.readouterr().out
    assert exit_info.value.code in (0, None), out
    assert out.startswith("ok: halton-demo: 5 trials, method halton")
    space = {
        "train.lr": FloatRange(1e-4, 3e-2, log=True),
        "prune.method": Categorical(("none", "magnitude")),
    }
    expected = _params(Halton(space, 5, seed=2))
    lines = [line.strip() for line in out.splitlines() if line.strip().startswith("trial ")]
    assert lines == [
        f"trial {i}: train.lr={p['train.lr']}, prune.method={p['prune.method']}"
        for i, p in enumerate(expected)
    ]
    assert "chosen by" not in out  # nothing depends on results
