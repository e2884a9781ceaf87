import pytest

from spx.workers.allocation import apportion, densities, global_keep, keep_counts, refine_min_layer

LAYERS = {"a": (10, 10), "b": (10, 100)}  # raw ERK: 20/100 = 0.2 and 110/1000 = 0.11


def test_erk_densities_of_a_layer_list():
    # 0.5 * 1100 = 550 kept = eps * (0.2 * 100 + 0.11 * 1000) -> eps = 550 / 130
    d = densities(LAYERS, 0.5, "erk")
    assert d["a"] == pytest.approx(0.2 * 550 / 130)
    assert d["b"] == pytest.approx(0.11 * 550 / 130)


def test_erk_makes_a_layer_dense_when_it_would_pass_density_one_and_resolves():
    # at 0.2: eps = 880 / 130 gives layer a density 1.35 -> a dense, b takes 780 of 1000
    assert densities(LAYERS, 0.2, "erk") == {"a": 1.0, "b": pytest.approx(0.78)}
    assert keep_counts(LAYERS, 0.2, "erk") == {"a": 100, "b": 780}


def test_er_leaves_kernel_dimensions_out_and_erk_counts_them():
    conv = {"c": (8, 4, 3, 3), "d": (8, 8, 3, 3)}
    er, erk = densities(conv, 0.9, "er"), densities(conv, 0.9, "erk")
    assert er["c"] / er["d"] == pytest.approx((12 / 32) / (16 / 64))
    assert erk["c"] / erk["d"] == pytest.approx((18 / 288) / (22 / 576))


def test_uniform_keep_counts_round_per_layer():
    assert keep_counts({"a": (7, 10), "b": (3, 7)}, 0.6, "uniform") == {"a": 28, "b": 8}


def test_erk_keep_counts_hit_the_global_count_exactly():
    shapes = {"a": (16, 64), "b": (16, 16), "c": (10, 16)}
    counts = keep_counts(shapes, 0.9, "erk")
    assert sum(counts.values()) == 1440 - round(0.9 * 1440)


def test_apportion_rounds_the_largest_remainders_up():
    assert apportion({"a": 2.5, "b": 1.7, "c": 0.8}, 5) == {"a": 2, "b": 2, "c": 1}


def test_mt_rescales_multiplicatively_and_clamps():
    # global threshold pruned 10 of 10 in the small layer; N_min = 4
    out = refine_min_layer({"big": 80.0, "small": 10.0}, {"big": 100, "small": 10}, 4)
    assert out == {"small": 6.0, "big": 84.0}
    # layers smaller than N_min stay dense
    assert refine_min_layer({"big": 50.0, "tiny": 2.0}, {"big": 100, "tiny": 3}, 4)["tiny"] == 0


def test_global_keep_is_one_threshold_across_layers():
    import torch

    scores = {"a": torch.tensor([4.0, 3.0, 0.5]), "b": torch.tensor([2.0, 1.0, 0.1])}
    assert global_keep(scores, 0.5) == {"a": 2, "b": 1}
