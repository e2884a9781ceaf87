"""The post-training methods as sweep methods: they prune the starting weights once from
the task's calibration data, hold the masks through the fine-tune, and report what they
were calibrated on."""

from __future__ import annotations

import pytest

from spx.errors import ConfigError
from spx.workers.config import TrialConfig
from spx.workers.loop import ListReporter, build_state, reported_metrics, train
from spx.workers.tasks import build_task

GPT = {
    "model.width": 32,
    "model.depth": 2,
    "model.heads": 2,
    "model.context": 16,
    "train.batch_size": 4,
    "train.report_every": 2,
    "prune.calibration.samples": 8,
}


@pytest.fixture(scope="module")
def task(tmp_path_factory):
    return build_task("code-gpt", tmp_path_factory.mktemp("data"))


@pytest.mark.parametrize("method", ["oneshot-magnitude", "wanda", "sparsegpt"])
def test_a_post_training_trial_prunes_once_and_holds_the_masks_while_it_fine_tunes(method, task):
    cfg = TrialConfig.from_flat(
        "code-gpt", {**GPT, "prune.method": method, "prune.sparsity": 0.5, "train.steps": 4}
    )
    reporter = ListReporter()
    final = train(cfg, task, reporter)
    assert final["model/sparsity"] == pytest.approx(0.5, abs=0.02)
    held = {m["model/sparsity"] for _, m in reporter.rows}  # every report, fine-tune too
    assert len(reporter.rows) >= 2 and held == {final["model/sparsity"]}
    assert final["calib/samples"] == 8 and final["calib/seq_len"] == 16
    assert {"calib/samples", "calib/digest"} <= reported_metrics(cfg, task)


def test_zero_steps_means_no_fine_tune_and_only_post_training_may_ask_for_it(task):
    flat = {**GPT, "prune.method": "wanda", "prune.pattern": "2:4", "train.steps": 0}
    final = train(TrialConfig.from_flat("code-gpt", flat), task, ListReporter())
    assert final["model/sparsity"] == pytest.approx(0.5, abs=0.02)
    with pytest.raises(ConfigError) as err:
        TrialConfig.from_flat("code-gpt", {**flat, "prune.method": "magnitude"})
    assert err.value.field == "train.steps"


def test_the_calibration_seed_picks_the_windows_and_is_reported(task):
    def digest(seed):
        flat = {**GPT, "prune.method": "wanda", "prune.sparsity": 0.5, "train.steps": 0}
        cfg = TrialConfig.from_flat("code-gpt", {**flat, "prune.calibration.seed": seed})
        return train(cfg, task, ListReporter())["calib/digest"]

    assert digest(0) == digest(0) != digest(1)


def test_n_m_keeps_n_of_every_m_inputs_in_every_block_layer(task):
    flat = {**GPT, "prune.method": "sparsegpt", "prune.pattern": "2:4", "train.steps": 0}
    cfg = TrialConfig.from_flat("code-gpt", flat)
    state = build_state(cfg, task)
    state.pruner.calibrate(state.model, task, cfg, state.device)
    for name, keep in state.pruner.masks.masks.items():
        if name.startswith("blocks."):
            assert bool((keep.reshape(keep.shape[0], -1, 4).sum(-1) == 2).all()), name


@pytest.mark.parametrize(
    "flat, field",
    [
        ({"prune.pattern": "3:2"}, "prune.pattern"),
        ({"prune.pattern": "2:4", "prune.sparsity": 0.7}, "prune.sparsity"),
        ({"prune.calibration.samples": 0}, "prune.calibration.samples"),
        ({"prune.sparsegpt.damp": True}, "prune.sparsegpt.damp"),
        ({"prune.refine": "dsnot2"}, "prune.refine"),
        ({"prune.refine": "dsnot"}, "prune.refine"),  # sparsegpt changes the kept weights
    ],
)
def test_bad_post_training_knobs_name_the_key(flat, field):
    with pytest.raises(ConfigError) as err:
        TrialConfig.from_flat("code-gpt", {**GPT, "prune.method": "sparsegpt", **flat})
    assert err.value.field == field, str(err.value)


def test_a_calibration_longer_than_the_context_names_its_key(task):
    flat = {**GPT, "prune.method": "wanda", "prune.sparsity": 0.5, "train.steps": 0}
    cfg = TrialConfig.from_flat("code-gpt", {**flat, "prune.calibration.seq_len": 64})
    with pytest.raises(Exception, match="model.context") as err:
        train(cfg, task, ListReporter())
    assert getattr(err.value, "field", None) == "prune.calibration.seq_len"


def test_n_m_on_a_layer_whose_inputs_m_does_not_divide_names_the_layer(task):
    flat = {**GPT, "model.width": 30, "model.heads": 3, "prune.method": "wanda"}
    cfg = TrialConfig.from_flat("code-gpt", {**flat, "prune.pattern": "4:8", "train.steps": 0})
    with pytest.raises(ConfigError) as err:
        task.validate(cfg)
    assert err.value.field == "prune.pattern" and "blocks.0.qkv has 30 inputs" in str(err.value)
