import pytest
import torch

from spx.kernels.nm import nm_mask, parse_nm


def test_2to4_on_a_2x8_linear_weight():
    w = torch.tensor(
        [
            [1.0, -4.0, 3.0, 2.0, 0.5, 0.1, -0.2, 0.9],
            [5.0, 6.0, -7.0, 8.0, -1.0, 2.0, -3.0, 4.0],
        ]
    )
    mask = nm_mask(w, 2, 4)
    assert mask.dtype == torch.bool
    assert mask.int().tolist() == [[0, 1, 1, 0, 1, 0, 0, 1], [0, 0, 1, 1, 0, 0, 1, 1]]


def test_1to4_and_4to4():
    w = torch.tensor([[1.0, -4.0, 3.0, 2.0]])
    assert nm_mask(w, 1, 4).int().tolist() == [[0, 1, 0, 0]]
    assert nm_mask(w, 4, 4).all()


def test_conv_groups_lie_along_input_channels():
    # weight [out=1, in=4, kh=1, kw=2]; along C_in the kw=0 column is 1, 2, 3, 4 and the
    # kw=1 column 4, 3, 2, 1. Grouping row-major over (in, kh, kw) would instead group
    # 1, 4, 2, 3 and keep a different pattern.
    w = torch.tensor([[1.0, 4.0], [2.0, 3.0], [3.0, 2.0], [4.0, 1.0]]).view(1, 4, 1, 2)
    mask = nm_mask(w, 2, 4)
    assert mask.shape == w.shape
    assert mask[0, :, 0, 0].tolist() == [False, False, True, True]
    assert mask[0, :, 0, 1].tolist() == [True, True, False, False]


def test_conv_random_weight_has_n_per_input_group():
    w = torch.randn(8, 16, 3, 3)
    mask = nm_mask(w, 2, 4)
    per_group = mask.permute(0, 2, 3, 1).reshape(-1, 4).sum(dim=1)
    assert (per_group == 2).all()


def test_ties_still_give_exactly_n_per_group():
    mask = nm_mask(torch.zeros(4, 8), 2, 4)
    assert (mask.view(-1, 4).sum(dim=1) == 2).all()


def test_input_dim_not_divisible_by_m():
    with pytest.raises(ValueError, match="input dimension 6 .* not divisible by M=4"):
        nm_mask(torch.randn(4, 6), 2, 4)
    with pytest.raises(ValueError, match="not divisible"):
        nm_mask(torch.randn(16, 3, 3, 3), 2, 4)  # the first conv (C_in = 3) stays dense


def test_n_greater_than_m():
    with pytest.raises(ValueError, match="5:4"):
        nm_mask(torch.randn(4, 8), 5, 4)


@pytest.mark.parametrize(
    ("spec", "expected"), [("2:4", (2, 4)), ("1:4", (1, 4)), (" 4 : 8 ", (4, 8))]
)
def test_parse_nm(spec, expected):
    assert parse_nm(spec) == expected


@pytest.mark.parametrize("spec", ["2-4", "a:b", "", "4:2", "0:4", "2:4:8", "2:", "-1:4", None, 24])
def test_parse_nm_rejects_junk(spec):
    with pytest.raises(ValueError, match="N:M"):
        parse_nm(spec)
