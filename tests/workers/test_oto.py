import json

import pytest
import torch
from torch import nn

from spx.workers import checkpoint
from spx.workers.compact import compact, kept_units
from spx.workers.config import PruneConfig, TrialConfig
from spx.workers.digits import load
from spx.workers.loop import ListReporter, advance, build_state, train
from spx.workers.oto import ADAM_VARIANT, OTO, SGD_VARIANT, Nodes, Phases, group_lambdas
from spx.workers.tasks import build_task
from spx.workers.zig import removable


def test_adaptive_lambda_follows_the_4c_rule():
    norm = torch.ones(4)
    xd = torch.tensor([-1.0, -0.01, 1.0, -0.2])
    dd = torch.full((4,), 4.0)
    # λ_lo = 1, λ_hi = 4: 20·1 clips to 10 >= λ_hi, so the midpoint; 20·0.01 = 0.2; ⟨x,d⟩ > 0: λ
    assert group_lambdas(norm, xd, dd, ADAM_VARIANT).tolist() == pytest.approx([2.5, 0.2, 0.01, 4])
    # SGD: λ 1e-3, λ_amplify 2, hat 10: 2·0.2 = 0.4 clips to 0.01
    assert group_lambdas(norm, xd, dd, SGD_VARIANT)[3].item() == pytest.approx(0.01)


def test_phases_come_from_the_step_fractions():
    cfg = PruneConfig(method="oto", sparsity=0.5)
    assert Phases.of(cfg, 100) == Phases(partition=10, adaptive=10, project=20, enforce=74)
    late = PruneConfig(method="oto", sparsity=0.5, oto_start=0.1, oto_project=0.6, oto_end=1.0)
    assert Phases.of(late, 100) == Phases(partition=10, adaptive=30, project=60, enforce=99)


def _toy(seed: int = 0):
    """20 hidden units; unit j's x_g is (w1[j], w2[j]) with norm 0.01·(j+1) for j < 10 and
    10 for the rest. The loss is 0, so d = 0 and only the group lasso moves anything."""
    model = nn.Sequential(nn.Linear(1, 20, bias=False), nn.ReLU(), nn.Linear(20, 1, bias=False))
    norms = torch.cat([0.01 * torch.arange(1, 11), torch.full((10,), 10.0)])
    with torch.no_grad():
        model[0].weight.copy_((norms / 2**0.5)[:, None])
        model[2].weight.copy_((norms / 2**0.5)[None, :])
    cfg = PruneConfig(method="oto", sparsity=0.25, oto_lambda=0.45, oto_start=0.0, oto_project=0.0)
    pruner = OTO(cfg, model, steps=10, seed=seed)
    return model, pruner, torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.0)


def _step(model, pruner, optimizer, step):
    changed = pruner.before_step(step, optimizer)
    optimizer.zero_grad()
    (model(torch.ones(3, 1)).sum() * 0).backward()
    pruner.after_backward(step, optimizer)
    optimizer.step()
    pruner.after_step()
    return changed


def _norms(model):
    return (model[0].weight[:, 0] ** 2 + model[2].weight[0] ** 2).sqrt()


def test_dhspg_partitions_penalises_projects_and_stops_exactly_at_the_target():
    model, pruner, opt = _toy()
    assert pruner.target == 5  # 20 - ⌊0.75·20⌋
    _step(model, pruner, opt, 0)
    # G_p: the top K = ⌊20·0.3⌋ = 6 scores; with d = 0 that is the 6 smallest groups
    assert pruner.penalized[0].tolist() == [True] * 6 + [False] * 14
    # a step of lr·λ = 0.045 crosses zero for the groups of norm 0.01..0.04: projected
    assert pruner.keep[0][:6].tolist() == [False] * 4 + [True] * 2
    assert _norms(model)[4:6].tolist() == pytest.approx([0.005, 0.015], abs=1e-6)
    assert _step(model, pruner, opt, 1)  # the masks changed after step 0
    # both 0.005 and 0.015 cross zero now, but only one more fits under Z = 5: a random one
    assert pruner.zeros() == 5 and pruner.keep[0][4:6].sum() == 1
    untouched = _norms(model)[6:].clone()
    for step in range(2, 10):  # target reached: no more penalty, zero groups stay zero
        _step(model, pruner, opt, step)
    assert torch.equal(_norms(model)[6:], untouched)
    assert pruner.zeros() == 5 and (pruner.projected, pruner.enforced) == (5, 0)
    dead = ~pruner.keep[0]
    assert bool((model[0].weight[dead] == 0).all()) and bool((model[2].weight[:, dead] == 0).all())
    assert pruner.masks.masks["2.weight"][0].tolist() == pruner.keep[0].tolist()
    again = _toy()
    for step in range(10):
        _step(*again, step)
    assert torch.equal(again[1].keep[0], pruner.keep[0])  # the random subset is seeded


def _digits(method, **flat):
    base = {"train.steps": 30, "model.width": 16, "train.report_every": 10}
    return TrialConfig.from_flat("digits-mlp", {**base, "prune.method": method, **flat})


@pytest.mark.parametrize("optimizer", ["adamw", "sgd"])
def test_oto_zero_groups_stay_zero_and_the_run_ends_exactly_at_the_target(optimizer):
    cfg = _digits(
        "oto", **{"prune.sparsity": 0.5, "train.optimizer": optimizer, "train.weight_decay": 0.1}
    )
    task = build_task("digits-mlp")
    state = build_state(cfg, task)
    batches = task.batches(cfg, state.generator)
    pruner = state.pruner
    previous = [k.clone() for k in pruner.keep]
    while state.step < cfg.train.steps:
        advance(state, task, next(batches))
        for group, keep, before in zip(pruner.space, pruner.keep, previous, strict=True):
            assert not bool((keep & ~before).any()), "a zero group revived"
            for s in group.trained:
                tensor = pruner.tensors[s.name]
                rows = s.rows(tensor.detach(), group.size)[~keep]
                assert bool((rows == 0).all()), s.name
                for slot in state.optimizer.state.get(tensor, {}).values():
                    if torch.is_tensor(slot) and slot.shape == tensor.shape:
                        assert bool((s.rows(slot, group.size)[~keep] == 0).all()), s.name
        previous = [k.clone() for k in pruner.keep]
    assert pruner.zeros() == pruner.target == 16  # of 2 x 16 hidden units
    k0, k1 = (int(k.sum()) for k in pruner.keep)
    assert pruner.masks.nnz() == 64 * k0 + k0 * k1 + k1 * 10  # rows and consumer columns


@pytest.mark.parametrize("method", ["oto", "nodes"])
def test_resume_from_a_checkpoint_matches_an_uninterrupted_run(method, tmp_path):
    cfg = _digits(
        method,
        **{"prune.sparsity": 0.5, "train.checkpoint_every": 10, "prune.oto_end": 0.5},
    )
    task = build_task("digits-mlp")
    straight_rep, resumed_rep = ListReporter(), ListReporter()
    straight = train(cfg, task, straight_rep, tmp_path / "straight")

    class Crash(Exception):
        pass

    class Reporter:
        def report(self, step, metrics):
            if step == 10:  # after the partition (step 3), before the target (step 14)
                raise Crash

    folder = tmp_path / "ckpt"
    with pytest.raises(Crash):
        train(cfg, task, Reporter(), folder)
    saved = json.loads((folder / "state.json").read_text())
    assert saved["step"] == 10
    assert saved["pruner"].get("partitioned", True)  # oto: G_p is part of the state
    resumed = train(cfg, task, resumed_rep, folder)
    assert resumed == pytest.approx(straight, rel=1e-6, abs=1e-7)
    after = [(s, m["model/sparsity"], m["val/loss"]) for s, m in straight_rep.rows if s > 10]
    assert [(s, m["model/sparsity"], m["val/loss"]) for s, m in resumed_rep.rows] == after
    ends = checkpoint.load(tmp_path / "straight")[0], checkpoint.load(folder)[0]
    keys = [k for k in ends[0] if k.startswith("pruner/")]
    assert any("/keep/" in k for k in keys)
    assert all(torch.equal(ends[0][k], ends[1][k]) for k in keys)


def test_train_with_oto_reaches_its_group_sparsity_and_compacts(tmp_path):
    cfg = TrialConfig.from_flat(
        "digits-mlp",
        {
            "train.steps": 60,
            "model.width": 32,
            "train.report_every": 20,
            "prune.method": "oto",
            "prune.sparsity": 0.5,
        },
    )
    task = build_task("digits-mlp")
    final = train(cfg, task, ListReporter(), tmp_path / "run")
    tensors, meta = checkpoint.load(tmp_path / "run")
    k0, k1 = (int(tensors[f"pruner/oto/keep/{i}"].sum()) for i in range(2))
    assert 64 - k0 - k1 == 32  # τ = 0.5 of the 64 hidden units, exactly
    nnz = 64 * k0 + k0 * k1 + k1 * 10
    assert final["model/nnz"] == nnz
    assert final["model/params"] == nnz + 32 + 32 + 10  # biases and norms are not counted
    assert final["val/acc"] > 0.3
    model = task.build_model(cfg)  # a trained trial's kept groups, from its checkpoint alone
    with torch.no_grad():
        for name, param in model.named_parameters():
            param.copy_(tensors[f"model/{name}"])
    assert [int(k.sum()) for k in kept_units(model).values()] == [k0, k1]
    small, counts = compact(model, task.example_input(cfg))
    x = load()[1].x
    with torch.no_grad():
        assert (model.eval()(x) - small.eval()(x)).abs().max() <= 1e-5
    assert counts.small.params == 64 * k0 + k0 + k0 * k1 + k1 + k1 * 10 + 10
    assert counts.small.flops == final["model/flops"] == nnz  # one position per example
    assert counts.full.flops == 64 * 32 + 32 * 32 + 32 * 10


def test_nodes_keeps_exact_counts_and_zeroes_every_slice_of_a_dropped_unit():
    cfg = TrialConfig.from_flat(
        "digits-cnn",
        {
            "train.steps": 4,
            "model.width": 8,
            "prune.method": "nodes",
            "prune.sparsity": 0.7,
            "train.weight_decay": 0.1,
        },
    )
    task = build_task("digits-cnn")
    state = build_state(cfg, task)
    batches = task.batches(cfg, state.generator)
    while state.step < cfg.train.steps:
        advance(state, task, next(batches))
    pruner = state.pruner
    # ⌊0.3·8⌋ = 2 of the 8-channel families, ⌊0.3·16⌋ = 4 of the 16-channel ones
    assert [(g.size, int(k.sum())) for g, k in zip(pruner.space, pruner.keep, strict=True)] == [
        (8, 2),
        (8, 2),
        (16, 4),
        (16, 4),
    ]
    keep = pruner.keep[0]  # the residual stream: stem, bn, every block's bn2
    for name in ("stem.weight", "bn.weight", "bn.bias", "blocks.0.bn2.bias"):
        assert bool((state.model.get_parameter(name)[~keep] == 0).all()), name
    assert bool((state.model.get_parameter("bn.weight")[keep] != 0).all())


def test_nodes_masks_are_deterministic_per_mask_seed_and_default_to_the_trial_seed():
    def keep(seed=0, **knobs):
        model = nn.Sequential(nn.Linear(4, 32), nn.ReLU(), nn.Linear(32, 2))
        cfg = PruneConfig(method="nodes", sparsity=0.5, **knobs)
        return Nodes(cfg, model, steps=1, seed=seed).keep[0]

    assert int(keep(mask_seed=7).sum()) == 16
    assert torch.equal(keep(mask_seed=7), keep(mask_seed=7, seed=5))  # the flag wins
    assert not torch.equal(keep(mask_seed=7), keep(mask_seed=8))
    assert torch.equal(keep(seed=3), keep(seed=3))
    assert not torch.equal(keep(seed=3), keep(seed=4))


def test_nodes_and_oto_see_the_same_groups():
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    cfg = PruneConfig(method="nodes", sparsity=0.5)
    assert [g.name for g in Nodes(cfg, model, steps=1).space] == [g.name for g in removable(model)]
