import pytest
import torch

from spx.kernels.chunking import chunk, chunk_side, flat_index, layout_for, unchunk


@pytest.mark.parametrize(
    ("n", "expected"),
    [
        (64, 64),  # target divides n
        (128, 64),
        (96, 48),  # largest divisor below 64: 1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48
        (100, 50),
        (7, 7),  # n below the target: n itself
        (130, 26),  # 130 = 2*5*13: divisors below 64 are 1, 2, 5, 10, 13, 26
        (4099, 1),  # a prime above the target degenerates to side 1
        (1, 1),
    ],
)
def test_divisor_rule(n, expected):
    assert chunk_side(n, 64) == expected


def test_divisor_rule_falls_back_to_smallest_divisor_above_target():
    # Only reachable with target < 1: nothing divides n below it.
    assert chunk_side(10, 0) == 1


def test_2d_tiles_are_row_major_blocks():
    x = torch.arange(16.0).view(4, 4)
    chunks, layout = chunk(x, target=2)
    assert chunks.tolist() == [
        [0.0, 1.0, 4.0, 5.0],
        [2.0, 3.0, 6.0, 7.0],
        [8.0, 9.0, 12.0, 13.0],
        [10.0, 11.0, 14.0, 15.0],
    ]
    assert (layout.n_chunks, layout.chunk_len) == (4, 4)


def test_1d_chunks():
    chunks, layout = chunk(torch.arange(6.0), target=4)  # divisors 1, 2, 3, 6 -> side 3
    assert chunks.tolist() == [[0.0, 1.0, 2.0], [3.0, 4.0, 5.0]]
    assert torch.equal(unchunk(chunks, layout), torch.arange(6.0))


def test_scalar_is_one_chunk_of_one():
    chunks, layout = chunk(torch.tensor(3.5))
    assert chunks.tolist() == [[3.5]]
    out = unchunk(chunks, layout)
    assert out.shape == () and out.item() == 3.5


@pytest.mark.parametrize(
    "shape",
    [(4096,), (100,), (7,), (96, 100), (130, 64), (64, 3, 3, 3), (8, 4, 2, 5), (2, 3, 4)],
)
@pytest.mark.parametrize("target", [2, 64])
def test_round_trip(shape, target):
    x = torch.randn(shape)
    chunks, layout = chunk(x, target)
    assert chunks.shape == (layout.n_chunks, layout.chunk_len)
    assert torch.equal(unchunk(chunks, layout), x)


def test_conv_weight_flattens_to_out_by_rest():
    layout = layout_for((64, 3, 3, 3))
    assert (layout.rows, layout.cols, layout.h, layout.w) == (64, 27, 64, 27)
    assert layout.n_chunks == 1 and layout.chunk_len == 1728


def test_empty_tensor_is_rejected():
    with pytest.raises(ValueError, match="empty"):
        layout_for((0, 4))


def test_flat_index_literal():
    layout = layout_for((4, 4), target=2)
    # chunk 1 is the top-right tile; its local index 3 is row 1, column 3
    assert flat_index(torch.tensor([[0], [3], [1], [2]]), layout).tolist() == [[0], [7], [9], [14]]


@pytest.mark.parametrize("shape", [(), (100,), (96, 100), (64, 3, 3, 3), (130, 64)])
def test_flat_index_addresses_the_same_entries_as_chunks(shape):
    x = torch.randn(shape)
    chunks, layout = chunk(x, 8)
    local = torch.randint(0, layout.chunk_len, (layout.n_chunks, 3))
    assert torch.equal(x.reshape(-1)[flat_index(local, layout)], chunks.gather(1, local))
