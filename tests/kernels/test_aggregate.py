import pytest
import torch

from spx.kernels.aggregate import SparseAgg, aggregate, scatter_mean
from spx.kernels.compress import SparseLoCoCompressor

# chunk=2, topk=2 -> four 2-element chunks, k = 1 each. Selected values of each worker are
# +-a in equal numbers, which quantize exactly (bins 1 and 3, each holding one value).
WORKER_A = torch.tensor([2.0, 0.0, -2.0, 0.0, 0.0, 2.0, 0.0, -2.0])  # picks 0, 2, 5, 7
WORKER_B = torch.tensor([4.0, 0.0, 0.0, -4.0, -4.0, 0.0, 0.0, 4.0])  # picks 0, 3, 4, 7


@pytest.fixture
def payloads():
    comp = SparseLoCoCompressor(topk=2, chunk=2)
    out = []
    for x in (WORKER_A, WORKER_B):
        payload, sent = comp.compress(x)
        assert torch.equal(sent, x)  # exact, so the expected values below are literal
        out.append(payload)
    return out


def test_mean_over_contributors(payloads):
    # index 0: (2 + 4) / 2; index 7: (-2 + 4) / 2; others have a single contributor
    assert aggregate(payloads).tolist() == [3.0, 0.0, -2.0, -4.0, -4.0, 2.0, 0.0, 1.0]


def test_mean_over_all_workers(payloads):
    got = aggregate(payloads, SparseAgg.MEAN_ALL).tolist()
    assert got == [3.0, 0.0, -1.0, -2.0, -2.0, 1.0, 0.0, 1.0]
    assert aggregate(payloads, "mean_all").tolist() == got


def test_single_worker_equals_decompress():
    comp = SparseLoCoCompressor()
    payload, sent = comp.compress(torch.randn(96, 100))
    assert torch.equal(aggregate([payload]), sent)


def test_scatter_mean_leaves_unselected_at_zero():
    out = scatter_mean([torch.tensor([1])], [torch.tensor([-5.0])], 3)
    assert out.tolist() == [0.0, -5.0, 0.0]


def test_unknown_mode():
    with pytest.raises(ValueError, match="'median'"):
        scatter_mean([torch.tensor([0])], [torch.tensor([1.0])], 1, "median")


def test_payloads_of_different_tensors_are_rejected():
    comp = SparseLoCoCompressor()
    a, _ = comp.compress(torch.randn(64, 64))
    b, _ = comp.compress(torch.randn(64, 32))
    with pytest.raises(ValueError, match="different tensors"):
        aggregate([a, b])
