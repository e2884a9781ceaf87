import pytest
import torch

from spx.kernels.nm import nm_mask
from spx.kernels.semistructured import is_2to4, semi_structured_available, to_semi_structured

needs_sparse_cores = pytest.mark.skipif(
    not semi_structured_available(), reason="needs CUDA with compute capability >= 8.0"
)


def test_is_2to4():
    assert is_2to4(torch.tensor([[1.0, 0.0, 2.0, 0.0, 0.0, 0.0, 0.0, 3.0]]))
    assert not is_2to4(torch.tensor([[1.0, 1.0, 1.0, 0.0]]))
    assert not is_2to4(torch.ones(2, 6))


def test_nm_mask_output_is_2to4():
    w = torch.randn(32, 64)
    assert is_2to4(w * nm_mask(w, 2, 4))


@pytest.mark.skipif(semi_structured_available(), reason="checks the CPU-only refusal")
def test_refuses_without_sparse_cores():
    assert semi_structured_available() is False
    with pytest.raises(ValueError, match="CUDA"):
        to_semi_structured(torch.zeros(64, 64, dtype=torch.float16))


@pytest.mark.gpu
@needs_sparse_cores
def test_rejects_a_dense_weight():
    w = torch.ones(128, 128, dtype=torch.float16, device="cuda")
    with pytest.raises(ValueError, match="2:4"):
        to_semi_structured(w)


@pytest.mark.gpu
@needs_sparse_cores
def test_sparse_linear_matches_dense():
    torch.manual_seed(0)
    w = torch.randn(128, 128, dtype=torch.float16, device="cuda")
    w = w * nm_mask(w, 2, 4)
    x = torch.randn(64, 128, dtype=torch.float16, device="cuda")
    sparse_w = to_semi_structured(w)
    got = torch.nn.functional.linear(x, sparse_w)
    torch.testing.assert_close(got, torch.nn.functional.linear(x, w), rtol=1e-2, atol=1e-2)
