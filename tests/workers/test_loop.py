import json
import math

import pytest
import torch

from spx.errors import TrialError
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


def test_resume_from_a_checkpoint_matches_an_uninterrupted_run(tmp_path):
    cfg = _cfg(
        **{
            "prune.method": "magnitude",
            "prune.sparsity": 0.7,
            "train.checkpoint_every": 20,
            "prune.schedule.end": 0.8,
        }
    )
    task = build_task("digits-mlp")
    straight_rep, resumed_rep = ListReporter(), ListReporter()
    straight = train(cfg, task, straight_rep)
    folder = tmp_path / "ckpt"
    assert _run_until(cfg, task, folder, stop=40) == 40
    resumed = train(cfg, task, resumed_rep, folder)
    assert resumed == pytest.approx(straight, rel=1e-6, abs=1e-7)
    after_40 = [(s, m["model/sparsity"]) for s, m in straight_rep.rows if s > 40]
    assert [(s, m["model/sparsity"]) for s, m in resumed_rep.rows] == after_40


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
