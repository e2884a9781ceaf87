"""The grid is counted, not built: grid_size agrees with grid_points and stops at a cap."""

from __future__ import annotations

import random

from spx.search.space import Categorical, Condition, grid_points, grid_size


def test_grid_size_matches_the_points_it_would_build():
    rng = random.Random(0)
    for _ in range(200):
        space = {f"k{i}": Categorical(tuple(range(rng.randint(1, 3)))) for i in range(4)}
        conditions = tuple(
            Condition(f"k{i}", f"k{p}", (0,))
            for i in range(1, 4)
            if rng.random() < 0.6
            for p in [rng.randrange(i)]
        )
        assert grid_size(space, conditions) == (len(grid_points(space, conditions)), True)


def test_a_huge_grid_is_counted_without_building_it():
    space = {f"k{i}": Categorical(tuple(range(10))) for i in range(40)}
    assert grid_size(space) == (10**40, True)


def test_many_parent_values_stop_at_the_cap_with_a_lower_bound():
    space = {f"p{i}": Categorical(tuple(range(10))) for i in range(12)}
    space["child"] = Categorical((1, 2))
    conditions = tuple(Condition("child", f"p{i}", (0,)) for i in range(12))
    count, exact = grid_size(space, conditions, cap=1000)
    assert not exact and count > 1000
