import math

import pytest
import torch

from spx.kernels.quant import dequantize, quantize


def test_literal_vector_2bit():
    # mu = 4, c = [-3, -2, -1, 0, 6], ||c||^2 = 50, sigma = sqrt(50 / 4) = 3.5355,
    # s = 6 * sigma / 4 = 5.3033, c/s + 2 = [1.43, 1.62, 1.81, 2.00, 3.13].
    codes, qp = quantize(torch.tensor([1.0, 2.0, 3.0, 4.0, 10.0]), bits=2)
    assert codes.dtype == torch.uint8
    assert codes.tolist() == [1, 2, 2, 2, 3]
    assert qp.shift == pytest.approx(4.0)
    # bin 0 empty -> 0; bin 1 = {-3}; bin 2 = mean(-2, -1, 0); bin 3 = {6}
    assert qp.lut.dtype == torch.float32
    assert qp.lut.tolist() == pytest.approx([0.0, -3.0, -1.0, 6.0])
    assert dequantize(codes, qp).tolist() == pytest.approx([1.0, 3.0, 3.0, 3.0, 10.0])


def test_grid_is_asymmetric_around_the_mean():
    # mu = 0, sigma = sqrt(2/3), s = 1.5 sigma = 1.2247, c/s = -0.82, 0, 0, +0.82:
    # a symmetric input lands one bin below centre (1) and one above (3).
    codes, qp = quantize(torch.tensor([-1.0, 0.0, 0.0, 1.0]))
    assert codes.tolist() == [1, 2, 2, 3]
    assert qp.lut.tolist() == pytest.approx([0.0, -1.0, 0.0, 1.0])


def test_positive_tail_shares_the_top_bin_negative_tail_reaches_bin_0():
    # 14 zeros plus -1 and +1: sigma = sqrt(2/15), s = 0.5477, c/s = -1.83 and +1.83.
    # -1 rounds to bin 0 (2 - 1.83 = 0.17); +1 would be bin 3.83 -> 4 and is clamped to 3.
    v = torch.cat([torch.tensor([-1.0, 1.0]), torch.zeros(14)])
    codes, qp = quantize(v)
    assert codes[:2].tolist() == [0, 3]
    assert set(codes[2:].tolist()) == {2}
    assert qp.lut.tolist() == pytest.approx([-1.0, 0.0, 0.0, 1.0])


def test_literal_vector_4bit():
    # B = 16, offset 8, s = 6 * sqrt(2/3) / 16 = 0.3062, c/s = -3.27, 0, 0, 3.27.
    codes, qp = quantize(torch.tensor([-1.0, 0.0, 0.0, 1.0]), bits=4)
    assert codes.tolist() == [5, 8, 8, 11]
    assert qp.bins == 16
    expected = [0.0] * 16
    expected[5], expected[11] = -1.0, 1.0
    assert qp.lut.tolist() == pytest.approx(expected)


def test_8bit_uses_256_bins():
    codes, qp = quantize(torch.randn(1000), bits=8)
    assert qp.bins == 256 and int(codes.max()) <= 255


def test_single_value_round_trips_exactly():
    codes, qp = quantize(torch.tensor([5.0]))
    assert codes.tolist() == [2]
    assert dequantize(codes, qp).tolist() == [5.0]


def test_constant_values_use_unit_step():
    codes, qp = quantize(torch.full((3,), 2.0))
    assert codes.tolist() == [2, 2, 2]
    assert dequantize(codes, qp).tolist() == [2.0, 2.0, 2.0]


def test_empty_input():
    codes, qp = quantize(torch.empty(0))
    assert codes.numel() == 0 and qp.lut.tolist() == [0.0] * 4


def test_bin_means_preserve_the_sum():
    v = torch.randn(10_000, generator=torch.Generator().manual_seed(0)) * 3 + 1
    codes, qp = quantize(v)
    assert math.isclose(float(dequantize(codes, qp).sum()), float(v.sum()), rel_tol=1e-3)


def test_shape_is_kept():
    codes, _ = quantize(torch.randn(3, 5))
    assert codes.shape == (3, 5)


def test_bad_bits():
    with pytest.raises(ValueError, match="bits"):
        quantize(torch.randn(4), bits=3)
