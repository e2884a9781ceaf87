import torch

from spx.kernels.compress import SparseLoCoCompressor
from spx.kernels.feedback import ef_subtract, ef_update


def test_ef_update_in_place():
    e = torch.tensor([1.0, 2.0, -4.0])
    out = ef_update(e, torch.tensor([10.0, 0.0, 2.0]), beta=0.5, alpha=2.0)
    assert out is e
    assert e.tolist() == [20.5, 1.0, 2.0]


def test_ef_subtract_in_place():
    e = torch.tensor([1.0, 2.0])
    assert ef_subtract(e, torch.tensor([0.25, 2.0])) is e
    assert e.tolist() == [0.75, 0.0]


def test_residual_is_e_minus_dequantized_transmission():
    # SparseLoCo's error feedback (arXiv 2508.15706): the selected 4 and 3 are sent as 3.5
    # each, so the
    # residual keeps +0.5 and -0.5 at the sent positions, not 0.
    e = torch.zeros(2, 4)
    ef_update(e, torch.tensor([[4.0, 0.0, 0.0, -2.0], [0.0, 1.0, 3.0, 0.0]]), 0.95, 1.0)
    _, sent = SparseLoCoCompressor(topk=1, chunk=2).compress(e)
    ef_subtract(e, sent)
    assert e.tolist() == [[0.5, 0.0, 0.0, -2.0], [0.0, 1.0, -0.5, 0.0]]


def test_residual_on_random_tensor():
    e = torch.randn(128, 64)
    before = e.clone()
    _, sent = SparseLoCoCompressor().compress(e)
    ef_subtract(e, sent)
    assert torch.equal(e, before - sent)
    assert e.norm() < before.norm()  # the chunk's largest entries were (mostly) paid off
