"""Checkpoints on real files: checksums in the manifest, damaged files named, the fallback
to the previous checkpoint, and the default cadence that lets a crashed trial resume."""

from __future__ import annotations

import hashlib
import json
import os

import pytest
import torch

from spx.errors import ConfigError
from spx.workers import checkpoint
from spx.workers.checkpoint import CheckpointError
from spx.workers.config import TrialConfig
from spx.workers.loop import ListReporter, checkpoint_due, train
from spx.workers.tasks import build_task


def _save(folder, step: int) -> None:
    tensors = {"w": torch.full((64,), float(step)), "b": torch.arange(4.0)}
    checkpoint.save(folder, tensors, {"step": step, "note": "x" * 40})


def _truncate(path, keep: int = 20) -> None:
    path.write_bytes(path.read_bytes()[:keep])


def test_the_manifest_holds_each_files_size_and_sha256(tmp_path):
    folder = tmp_path / "checkpoint"
    _save(folder, 3)
    files = json.loads((folder / checkpoint.MANIFEST).read_text())["files"]
    assert set(files) == {checkpoint.TENSORS, checkpoint.STATE}
    for name, entry in files.items():
        blob = (folder / name).read_bytes()
        assert entry == {"bytes": len(blob), "sha256": hashlib.sha256(blob).hexdigest()}
    tensors, state = checkpoint.load(folder)
    assert state["step"] == 3 and torch.equal(tensors["w"], torch.full((64,), 3.0))


def test_a_truncated_tensors_file_without_a_previous_one_names_the_file(tmp_path):
    folder = tmp_path / "checkpoint"
    _save(folder, 3)
    _truncate(folder / checkpoint.TENSORS)
    with pytest.raises(CheckpointError) as err:
        checkpoint.load(folder)
    message = str(err.value)
    assert str(folder / checkpoint.TENSORS) in message and "truncated" in message
    assert "20 bytes" in message


def test_a_corrupt_state_file_without_a_previous_one_names_the_file(tmp_path):
    folder = tmp_path / "checkpoint"
    _save(folder, 3)
    text = (folder / checkpoint.STATE).read_text()
    (folder / checkpoint.STATE).write_text(text.replace('{"note"', '{"nope"'))  # same size
    with pytest.raises(CheckpointError) as err:
        checkpoint.load(folder)
    assert str(folder / checkpoint.STATE) in str(err.value) and "sha256" in str(err.value)


def test_a_checkpoint_from_before_checksums_still_loads_and_names_a_broken_file(tmp_path):
    folder = tmp_path / "checkpoint"
    _save(folder, 3)
    (folder / checkpoint.MANIFEST).unlink()
    assert checkpoint.load(folder)[1]["step"] == 3
    (folder / checkpoint.STATE).write_text('{"step": 3, "note')
    with pytest.raises(CheckpointError, match="state.json: not valid JSON"):
        checkpoint.load(folder)
    _truncate(folder / checkpoint.TENSORS)
    with pytest.raises(CheckpointError, match="tensors.safetensors: not a readable safetensors"):
        checkpoint.load(folder)


@pytest.mark.parametrize("damage", ["truncate tensors", "corrupt state", "corrupt manifest"])
def test_a_damaged_checkpoint_falls_back_to_the_previous_one(tmp_path, damage, caplog):
    folder = tmp_path / "checkpoint"
    for step in (1, 2, 3):
        _save(folder, step)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint", "checkpoint.prev"]
    if damage == "truncate tensors":
        _truncate(folder / checkpoint.TENSORS)
    elif damage == "corrupt state":
        (folder / checkpoint.STATE).write_text("{]")
    else:
        (folder / checkpoint.MANIFEST).write_text("{")
    with caplog.at_level("WARNING", logger="spx.checkpoint"):
        tensors, state = checkpoint.load(folder)
    assert state["step"] == 2 and torch.equal(tensors["w"], torch.full((64,), 2.0))
    assert str(folder) in caplog.text and "previous checkpoint" in caplog.text


def test_when_both_are_damaged_the_error_names_both_files(tmp_path):
    folder = tmp_path / "checkpoint"
    _save(folder, 1)
    _save(folder, 2)
    _truncate(folder / checkpoint.TENSORS)
    _truncate(folder.with_name("checkpoint.prev") / checkpoint.STATE, keep=3)
    with pytest.raises(CheckpointError) as err:
        checkpoint.load(folder)
    assert str(folder / checkpoint.TENSORS) in str(err.value)
    assert str(folder.with_name("checkpoint.prev") / checkpoint.STATE) in str(err.value)


def test_a_truncated_checkpoint_is_not_kept_as_the_fallback(tmp_path):
    folder = tmp_path / "checkpoint"
    _save(folder, 1)
    _save(folder, 2)
    _truncate(folder / checkpoint.TENSORS)  # step 2 is damaged; step 1 is the fallback
    _save(folder, 3)  # must not replace the good step-1 fallback by the damaged step 2
    _truncate(folder / checkpoint.TENSORS)
    assert checkpoint.load(folder)[1]["step"] == 1


def test_a_crash_between_the_renames_of_save_leaves_a_checkpoint(tmp_path):
    folder = tmp_path / "checkpoint"
    _save(folder, 1)
    _save(folder, 2)
    folder.rename(folder.with_name("checkpoint.old-999"))  # save(3) died after its first rename
    assert checkpoint.load(folder)[1]["step"] == 2


def test_the_fallback_is_the_newest_complete_one(tmp_path):
    folder = tmp_path / "checkpoint"
    _save(folder, 1)
    folder.rename(folder.with_name("checkpoint.old-999"))  # left by a process long dead
    os.utime(folder.with_name("checkpoint.old-999"), (1.0, 1.0))
    _save(folder, 2)
    _save(folder, 3)
    _truncate(folder / checkpoint.TENSORS)
    assert checkpoint.load(folder)[1]["step"] == 2


def test_a_save_that_fails_leaves_no_temporary_folder_and_the_last_checkpoint(tmp_path):
    folder = tmp_path / "checkpoint"
    _save(folder, 1)
    with pytest.raises(TypeError):
        checkpoint.save(folder, {"w": torch.ones(2)}, {"step": 2, "bad": {1, 2}})  # not JSON
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint"]
    assert checkpoint.load(folder)[1]["step"] == 1


def test_no_checkpoint_is_none(tmp_path):
    assert checkpoint.load(tmp_path / "checkpoint") is None


# -- the loop: fallback and the default cadence ----------------------------------------


def _cfg(**flat):
    base = {"train.steps": 60, "model.width": 16, "train.report_every": 10}
    return TrialConfig.from_flat("digits-mlp", {**base, **flat})


class _Crash(Exception):
    pass


class _CrashAt:
    def __init__(self, step: int):
        self.step = step

    def report(self, step, metrics):
        if step >= self.step:
            raise _Crash


def test_a_trial_whose_last_checkpoint_is_truncated_resumes_from_the_one_before(tmp_path):
    cfg, task, folder = _cfg(**{"train.checkpoint_every": 20}), build_task("digits-mlp"), tmp_path
    with pytest.raises(_Crash):
        train(cfg, task, _CrashAt(50), folder / "checkpoint")  # saved at 20 and 40
    _truncate(folder / "checkpoint" / checkpoint.TENSORS)
    resumed = ListReporter()
    train(cfg, task, resumed, folder / "checkpoint")
    assert [step for step, _ in resumed.rows] == [30, 40, 50, 60]  # from step 20


def test_by_default_a_crashed_trial_resumes_from_a_step_past_zero(tmp_path):
    cfg, task = _cfg(), build_task("digits-mlp")
    assert cfg.train.checkpoint_every == "auto"
    with pytest.raises(_Crash):
        train(cfg, task, _CrashAt(40), tmp_path / "checkpoint")  # saves every 6 steps
    resumed = ListReporter()
    train(cfg, task, resumed, tmp_path / "checkpoint")
    assert resumed.rows[0][0] == 40  # from step 36, the last save before the crash


def test_the_cadence_of_auto_explicit_steps_and_zero():
    auto, every_7, never = (_cfg(**{"train.checkpoint_every": v}) for v in ("auto", 7, 0))
    assert [s for s in range(1, 61) if checkpoint_due(auto, s, 60)] == list(range(6, 61, 6))
    assert [s for s in range(1, 61) if checkpoint_due(every_7, s, 60)] == [
        *range(7, 60, 7),
        60,
    ]
    assert [s for s in range(1, 61) if checkpoint_due(never, s, 60)] == [60]
    assert checkpoint_due(auto, 5, 1000, since_save_s=301.0)  # 5 minutes since the last save
    assert not checkpoint_due(never, 5, 1000, since_save_s=10_000.0)  # 0 means 0


@pytest.mark.parametrize("value", [True, -1, 2.5, "often"])
def test_a_bad_checkpoint_every_names_the_key(value):
    with pytest.raises(ConfigError) as err:
        _cfg(**{"train.checkpoint_every": value})
    assert "train.checkpoint_every" in str(err.value) and repr(value) in str(err.value)
