import copy
import json

import pytest
import torch
from torch.nn import functional as F

from spx.errors import ConfigError, TrialPruned
from spx.search.cells import (
    DerivedNet,
    Genotype,
    SparseConv,
    SparseLinear,
    Supernet,
    derive,
    set_masked,
)
from spx.search.dass import DerivedTask, arch_step, build_supernet, run, validate
from spx.workers.config import TrialConfig
from spx.workers.loop import ListReporter, train
from spx.workers.tasks import build_task


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """These nets are tiny: a second intra-op thread only adds contention."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


TINY = {"nas.cells": 1, "nas.nodes": 2, "nas.channels": 4, "train.batch_size": 32}


def _cfg(method="dass", **flat):
    base = {"nas.method": method, "prune.method": "magnitude", "prune.sparsity": 0.9, **TINY}
    return TrialConfig.from_flat("digits-cnn", {**base, **flat})


def _linear(score="magnitude"):
    layer = SparseLinear(2, 4, sparsity=0.5, score=score)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[1.0, -5.0], [0.1, 3.0], [2.0, -0.2], [4.0, 0.3]]))
        layer.bias.zero_()
    return layer


def test_masks_keep_exactly_the_top_fraction_of_scores():
    layer = _linear()
    assert layer.mask().tolist() == [[0, 1], [0, 1], [1, 0], [1, 0]]  # |w| 5, 3, 2, 4 kept
    assert torch.equal(layer.sparse_weight(), layer.weight * layer.mask())
    layer.masked = False
    assert torch.equal(layer.sparse_weight(), layer.weight)

    conv = SparseConv(3, 3, 3, sparsity=0.9)  # 81 weights: keep 81 - round(72.9) = 8
    with torch.no_grad():
        conv.weight.copy_(torch.randperm(81).float().sub(40).view(3, 3, 3, 3))
    kept = conv.weight[conv.mask().bool()]
    assert sorted(kept.abs().tolist()) == [37.0, 37.0, 38.0, 38.0, 39.0, 39.0, 40.0, 40.0]

    learned = _linear("learned")
    with torch.no_grad():
        learned.scores.copy_(torch.tensor([[9.0, 0.0], [0.0, -8.0], [0.0, 1.0], [7.0, 0.0]]))
    assert learned.mask().tolist() == [[1, 0], [0, 1], [0, 1], [1, 0]]  # by |S|, not |W|


def test_learned_scores_get_a_straight_through_gradient_and_weights_only_where_kept():
    layer = _linear("learned")
    x = torch.ones(1, 2)
    layer(x).sum().backward()  # dL/d(W ⊙ M) = 1 everywhere
    assert torch.equal(layer.scores.grad, layer.weight.detach())  # = W (S > 0): pruned too
    assert torch.equal(layer.weight.grad, layer.mask().detach())

    magnitude = _linear()
    magnitude(x).sum().backward()
    assert magnitude.scores is None
    assert magnitude.weight.grad.tolist() == [[0, 1], [0, 1], [1, 0], [1, 0]]


def _alpha_grad(net, batch):
    net.alpha.grad = None
    net.train()
    F.cross_entropy(net(batch[0]), batch[1]).backward(inputs=[net.alpha])
    return net.alpha.grad.clone()


def test_the_alpha_gradient_of_dass_sees_the_masked_weights():
    cfg = _cfg()
    net = build_supernet(cfg)
    assert all(m.masked for m in net.modules() if hasattr(m, "masked"))
    assert not any(
        m.masked for m in build_supernet(_cfg("darts")).modules() if hasattr(m, "masked")
    )
    batch = next(build_task("digits-cnn").batches(cfg, torch.Generator().manual_seed(0), "holdout"))

    masked = _alpha_grad(net, batch)
    twin = copy.deepcopy(net)  # dense, with the pruned weights zeroed by hand
    with torch.no_grad():
        for module in twin.modules():
            if isinstance(module, SparseConv | SparseLinear):
                module.weight.mul_(module.mask())
    set_masked(twin, False)
    set_masked(net, False)
    dense = _alpha_grad(net, batch)

    assert torch.allclose(masked, _alpha_grad(twin, batch), atol=1e-6)
    assert (masked - dense).abs().max() > 1e-3 * dense.abs().max()


def test_an_alpha_step_moves_alpha_and_nothing_else():
    cfg = _cfg()
    net, task = build_supernet(cfg), build_task("digits-cnn")
    before = {n: p.detach().clone() for n, p in net.named_parameters()}
    opt = torch.optim.Adam([net.alpha], lr=0.1, betas=(0.5, 0.999))
    arch_step(net, opt, task, next(task.batches(cfg, torch.Generator(), "holdout")))
    changed = {n for n, p in net.named_parameters() if not torch.equal(p, before[n])}
    assert changed == {"alpha"}


def test_derivation_takes_the_two_strongest_non_none_edges_per_node():
    ops = ("none", "skip", "sparse-conv-3")
    alpha = torch.tensor(
        [
            [0.0, 2.0, 0.0],  # node 0 <- input 0: skip
            [0.0, 0.0, 1.0],  # node 0 <- input 1: sparse-conv-3
            [9.0, 1.0, 0.0],  # node 1 <- input 0: "none" dominates, so the weakest real edge
            [0.0, 0.0, 3.0],  # node 1 <- input 1: sparse-conv-3
            [0.0, 1.5, 0.0],  # node 1 <- node 0: skip
        ]
    )
    genotype = derive(alpha, ops, nodes=2)
    assert genotype.to_json() == {
        "normal": [[["skip", 0], ["sparse-conv-3", 1]], [["sparse-conv-3", 1], ["skip", 2]]]
    }
    assert genotype.table() == {
        "node": [0, 0, 1, 1],
        "input": [0, 1, 1, 2],
        "op": ["skip", "sparse-conv-3", "sparse-conv-3", "skip"],
    }
    with pytest.raises(ValueError, match="no op but 'none'"):
        derive(alpha[:, :1], ("none",), nodes=2)


GENOTYPE = Genotype(
    ((("sparse-conv-3", 0), ("sep-conv-3", 1)), (("dil-conv-3", 1), ("max-pool", 2)))
)


def test_the_derived_net_prunes_to_ninety_percent_through_the_training_loop():
    net = DerivedNet(GENOTYPE, cells=2, channels=4)
    assert net(torch.zeros(3, 64)).shape == (3, 10)
    assert not any(isinstance(m, SparseConv | SparseLinear) for m in net.modules())
    cfg = _cfg(**{"nas.cells": 2, "train.steps": 40, "train.report_every": 20})
    final = train(cfg, DerivedTask(build_task("digits-cnn"), GENOTYPE), ListReporter())
    assert final["model/sparsity"] == pytest.approx(0.9, abs=0.01)  # 16-weight layers round
    sizes = [
        m.weight.numel()
        for name, m in net.named_modules()
        if isinstance(m, torch.nn.Conv2d | torch.nn.Linear) and name != "stem"  # stem dense
    ]
    assert final["model/nnz"] == sum(n - round(0.9 * n) for n in sizes)
    assert 0.0 <= final["val/acc"] <= 1.0


def test_run_searches_writes_the_genotype_and_retrains_after_the_search_steps(tmp_path):
    cfg = _cfg(**{"nas.search_steps": 20, "train.steps": 30, "train.report_every": 10})
    task, rep = build_task("digits-cnn"), ListReporter()
    ckpt = tmp_path / "trial" / "checkpoint"
    final = run(cfg, task, rep, ckpt)

    steps = [s for s, _ in rep.rows]
    assert steps[:2] == [10, 20] and steps == sorted(set(steps)) and steps[-1] == 50
    assert {"search/loss", "search/acc", "search/arch_loss"} <= rep.rows[0][1].keys()
    assert all("val/acc" in m for s, m in rep.rows if s > 20)
    assert final["nas/search_steps"] == 20.0 and final["nas/search_s"] > 0
    assert final["model/sparsity"] == pytest.approx(0.9, abs=0.01)  # 16-weight layers round
    assert 0.0 <= final["val/acc"] <= 1.0

    saved = json.loads((tmp_path / "trial" / "genotype.json").read_text())
    genotype = Genotype.from_json(saved)
    assert [len(node) for node in genotype.normal] == [2, 2]
    assert [(s, n) for s, n, _ in rep.tables if n == "genotype"] == [(20, "genotype")]
    assert rep.tables[0][2]["op"] == [op for node in genotype.normal for op, _ in node]

    again = ListReporter()  # a retried attempt: no second search, the retrain restored
    assert run(cfg, task, again, ckpt) == pytest.approx(final)
    assert again.rows == []


def test_a_stop_during_the_search_ends_the_trial_at_that_search_step():
    class StopAtFirst(ListReporter):
        def report(self, step, metrics):
            super().report(step, metrics)
            return False

    cfg = _cfg(**{"nas.search_steps": 6, "train.report_every": 3})
    with pytest.raises(TrialPruned) as stop:
        run(cfg, build_task("digits-cnn"), StopAtFirst())
    assert stop.value.step == 3 and "search/loss" in stop.value.metrics


@pytest.mark.parametrize(
    ("task", "flat", "field"),
    [
        ("digits-cnn", {"nas.ops": ["none", "skip", "sep-conv-3"]}, "nas.ops"),
        ("code-gpt", {}, "task"),
        ("digits-cnn", {"prune.sparsity": 0.0}, "prune.sparsity"),
        ("digits-cnn", {"prune.method": "nm", "prune.sparsity": 0.5}, "prune.nm"),
        ("digits-cnn", {"nas.method": "none"}, "nas.method"),
    ],
)
def test_validate_names_the_field(task, flat, field):
    base = {"nas.method": "dass", "prune.method": "magnitude", "prune.sparsity": 0.9}
    with pytest.raises(ConfigError) as err:
        validate(TrialConfig.from_flat(task, {**base, **flat}))
    assert err.value.field == field


def test_darts_validates_dense_and_dass_at_a_sparsity():
    validate(_cfg("darts", **{"prune.method": "none", "prune.sparsity": 0.0}))
    validate(_cfg("dass", **{"nas.ops": ["skip", "sparse-conv-5"]}))
    validate(_cfg("dass", **{"nas.score": "learned"}))


def test_the_supernet_trains_learned_scores_under_dass():
    net = Supernet(("skip", "sparse-conv-3"), 1, 2, 4, sparsity=0.5, score="learned")
    F.cross_entropy(net(torch.rand(8, 64)), torch.arange(8)).backward()
    scores = [m.scores for m in net.modules() if isinstance(m, SparseConv)]
    assert scores and all(s.grad is not None and s.grad.abs().sum() > 0 for s in scores)
    assert not any(p is net.alpha for p in net.weights())
