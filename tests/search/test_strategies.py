from spx.search.grid import GridSearch
from spx.search.random_search import RandomSearch
from spx.search.space import Categorical, FloatRange, IntRange


def _drain(strategy):
    out = []
    while (s := strategy.ask()) is not None:
        out.append(s)
    return out


def test_grid_enumerates_every_combination_in_order():
    grid = GridSearch({"a": Categorical((1, 2, 3)), "b": Categorical((True, False))})
    points = _drain(grid)
    assert grid.total == 6
    assert [s.number for s in points] == list(range(6))
    assert [tuple(s.params.values()) for s in points] == [
        (1, True),
        (1, False),
        (2, True),
        (2, False),
        (3, True),
        (3, False),
    ]


def test_random_is_deterministic_from_seed_and_index_and_stays_in_bounds():
    space = {
        "lr": FloatRange(1e-4, 1e-2, log=True),
        "width": IntRange(8, 64),
        "method": Categorical(("none", "magnitude")),
    }
    a = _drain(RandomSearch(space, trials=50, seed=3))
    b = _drain(RandomSearch(space, trials=50, seed=3))
    c = _drain(RandomSearch(space, trials=50, seed=4))
    assert a == b and a != c
    assert len(a) == 50
    assert all(1e-4 <= s.params["lr"] <= 1e-2 for s in a)
    assert all(8 <= s.params["width"] <= 64 and isinstance(s.params["width"], int) for s in a)
    assert {s.params["method"] for s in a} == {"none", "magnitude"}
    # trial i does not depend on how many trials the sweep asks for
    assert RandomSearch(space, trials=5, seed=3).sample(4) == a[4].params


def test_log_int_range_covers_both_ends():
    axis = IntRange(1, 4, log=True)
    import random

    seen = {axis.sample(random.Random(i)) for i in range(400)}
    assert seen == {1, 2, 3, 4}
