import pytest
import torch

from spx.kernels.topk import k_for_chunk, topk_per_chunk


@pytest.mark.parametrize(
    ("chunk_len", "topk", "expected"),
    [
        (4096, 64, 64),  # 1.5625 % of a 64x64 chunk
        (4096, 128, 128),
        (64, 64, 1),  # 1-D chunk of 64: 64*64/4096 = 1
        (64, 128, 2),
        (2048, 64, 32),
        (32, 64, 1),  # round(0.5) = 0 (half to even), floored at 1
        (1, 64, 1),
        (1728, 64, 27),  # a 64x27 conv chunk
    ],
)
def test_k_for_chunk(chunk_len, topk, expected):
    assert k_for_chunk(chunk_len, topk) == expected


def test_k_is_clamped_to_chunk_len():
    assert k_for_chunk(4, 100, target=2) == 4


def test_topk_keeps_signs_and_selects_by_magnitude():
    chunks = torch.tensor(
        [
            [0.5, -7.0, 3.0, -0.1, 6.0, -2.0, 0.0, 4.0],
            [-1.0, 2.0, -3.0, 4.0, -5.0, 6.0, -7.0, 8.0],
        ]
    )
    idx, values = topk_per_chunk(chunks, 3)
    assert idx.dtype == torch.int64
    assert idx.tolist() == [[1, 4, 7], [5, 6, 7]]
    assert values.tolist() == [[-7.0, 6.0, 4.0], [6.0, -7.0, 8.0]]


def test_topk_rejects_bad_k():
    with pytest.raises(ValueError, match="k must be"):
        topk_per_chunk(torch.zeros(2, 4), 5)
