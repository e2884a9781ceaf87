import json
import math

import pytest
import torch

from spx.errors import TrialError
from spx.workers import checkpoint
from spx.workers.config import TrialConfig
from spx.workers.loop import ListReporter, train
from spx.workers.tasks import DigitsMLP, build_task


def _cfg(**flat):
    base = {"train.steps": 60, "model.width": 32, "train.report_every": 20}
    return TrialConfig.from_flat("digits-mlp", {**base, **flat})


def test_gradual_magnitude_logs_its_schedule_and_hits_the_target():
    rep = ListReporter()
    cfg = _cfg(
        **{
            "prune.method": "magnitude",
            "prune.sparsity": 0.8,
            "prune.schedule.start": 0.0,
            "prune.schedule.end": 0.5,
        }
    )
    final = train(cfg, build_task("digits-mlp"), rep)
    sparsities = [m["model/sparsity"] for _, m in rep.rows]
    assert sparsities == sorted(sparsities)  # masks are monotone
    assert final["model/sparsity"] == pytest.approx(0.8, abs=0.005)
    assert final["val/acc"] > 0.3  # chance is 0.1
    # N_avg lies between the final and the dense parameter count
    assert final["model/params"] < final["model/params_avg"] < rep.rows[0][1]["model/params"] + 1


def test_dense_reports_a_constant_parameter_count():
    rep = ListReporter()
    final = train(_cfg(), build_task("digits-mlp"), rep)
    dense = 64 * 32 + 32 + 32 * 32 + 32 + 32 * 10 + 10
    assert {m["model/params"] for _, m in rep.rows} == {float(dense)}
    assert final["model/params_avg"] == dense
    assert final["model/sparsity"] == 0.0
    assert final["model/flops"] == 64 * 32 + 32 * 32 + 32 * 10


RESUMABLE = {
    "magnitude": {"prune.sparsity": 0.7, "prune.schedule.end": 0.8},
    "rigl": {"prune.sparsity": 0.8, "prune.update_every": 15, "prune.distribution": "erk"},
    "set": {"prune.sparsity": 0.8, "prune.update_every": 15},
    "lottery": {"prune.sparsity": 0.6, "prune.rate": 0.5, "prune.rewind_step": 10},
    "nm": {"prune.nm": "1:4"},
}


@pytest.mark.parametrize("method", sorted(RESUMABLE))
def test_resume_from_a_checkpoint_matches_an_uninterrupted_run(method, tmp_path):
    cfg = _cfg(
        **{
            "prune.method": method,
            "train.checkpoint_every": 20,
            "train.lr_schedule": "cosine",
            **RESUMABLE[method],
        }
    )
    task = build_task("digits-mlp")
    straight_rep, resumed_rep = ListReporter(), ListReporter()
    straight = train(cfg, task, straight_rep, tmp_path / "straight")
    stop = 100 if method == "lottery" else 40  # lottery: mid second round (60, 110, 160)
    folder = tmp_path / "ckpt"
    assert _run_until(cfg, task, folder, stop=stop) == stop
    resumed = train(cfg, task, resumed_rep, folder)
    assert resumed == pytest.approx(straight, rel=1e-6, abs=1e-7)
    after = [(s, m["model/sparsity"], m["val/loss"]) for s, m in straight_rep.rows if s > stop]
    assert [(s, m["model/sparsity"], m["val/loss"]) for s, m in resumed_rep.rows] == after
    ends = checkpoint.load(tmp_path / "straight")[0], checkpoint.load(folder)[0]
    masks = [{k: v for k, v in end.items() if k.startswith("pruner/mask/")} for end in ends]
    assert masks[0].keys() == masks[1].keys() and masks[0]
    assert all(torch.equal(masks[0][k], masks[1][k]) for k in masks[0])  # the same masks


def test_every_mask_update_reports_and_hands_over_the_layer_density_table():
    rep = ListReporter()
    cfg = _cfg(
        **{
            "prune.method": "magnitude",
            "prune.sparsity": 0.5,
            "prune.schedule.end": 0.5,
            "prune.schedule.every": 10,
        }
    )
    train(cfg, build_task("digits-mlp"), rep)
    assert [s for s, _, _ in rep.tables] == [1, 11, 21, 31]  # updates at steps 0, 10, 20, 30
    assert {name for _, name, _ in rep.tables} == {"layer_density"}
    step, _, table = rep.tables[-1]
    assert table["layer"] == ["net.0.weight", "net.2.weight", "net.4.weight"]
    assert table["step"] == [31] * 3 and table["numel"] == [64 * 32, 32 * 32, 32 * 10]
    assert table["density"] == [pytest.approx(0.5, abs=1e-3)] * 3
    assert step in {s for s, _ in rep.rows}


def test_lottery_reports_increasing_steps_across_rounds():
    rep = ListReporter()
    cfg = _cfg(**{"prune.method": "lottery", "prune.rounds": 2, "prune.rewind_step": 10})
    final = train(cfg, build_task("digits-mlp"), rep)
    steps = [s for s, _ in rep.rows]
    assert steps == sorted(set(steps)) and steps[-1] == 60 + 2 * 50
    assert final["model/sparsity"] == pytest.approx(0.36, abs=1e-3)
    assert final["data/tokens"] == 160 * 64


def _run_until(cfg, task, folder, stop):
    """Train with checkpoints and crash right after the report at ``stop``."""

    class Crash(Exception):
        pass

    class Reporter:
        def report(self, step, metrics):
            if step == stop:
                raise Crash

    with pytest.raises(Crash):
        train(cfg, task, Reporter(), folder)
    return json.loads((folder / "state.json").read_text())["step"]


class _NaNTask(DigitsMLP):
    def loss(self, model, batch):
        return super().loss(model, batch) * math.nan


def test_a_nan_loss_fails_the_trial_with_the_step():
    with pytest.raises(TrialError, match=r"train/loss is nan at step 1"):
        train(_cfg(), _NaNTask(), ListReporter())


def test_code_gpt_trains_on_the_stdlib_corpus(tmp_path):
    cfg = TrialConfig.from_flat(
        "code-gpt",
        {
            "train.steps": 3,
            "model.width": 32,
            "model.depth": 1,
            "train.batch_size": 4,
            "model.context": 16,
        },
    )
    task = build_task("code-gpt", tmp_path)
    torch.manual_seed(0)
    final = train(cfg, task, ListReporter())
    assert (tmp_path / "code-corpus-v1" / "train.bin").stat().st_size > 1_000_000
    assert (tmp_path / "code-corpus-v1" / "val.bin").stat().st_size > 50_000
    # near-uniform over 256 bytes at init: about ln(256) = 5.55 nats per byte
    assert 4.0 < final["val/loss"] < 6.0
    assert final["data/tokens"] == 3 * 4 * 16


def test_a_reporter_can_stop_a_trial_early_keeping_its_checkpoint(tmp_path):
    from spx.errors import TrialPruned

    class StopAt40:
        def report(self, step, metrics):
            return step < 40

    with pytest.raises(TrialPruned) as info:
        train(_cfg(), build_task("digits-mlp"), StopAt40(), tmp_path / "ckpt")
    assert info.value.step == 40
    assert info.value.metrics["val/acc"] > 0.1
    assert json.loads((tmp_path / "ckpt" / "state.json").read_text())["step"] == 40


def test_the_final_metrics_are_the_last_reports_evaluation_done_once():
    class Counting(DigitsMLP):
        calls = 0

        def evaluate(self, model, cfg, part="val"):
            Counting.calls += 1
            return super().evaluate(model, cfg, part)

    rep = ListReporter()
    final = train(_cfg(), Counting(), rep)
    last_step, last = rep.rows[-1]
    assert last_step == 60
    assert final["val/loss"] == last["val/loss"] and final["val/acc"] == last["val/acc"]
    assert Counting.calls == 3  # one per report (steps 20, 40, 60), none again at the end
