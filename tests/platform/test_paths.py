"""File names derived from sweep names, and the one way an output file is written."""

from __future__ import annotations

import re
from datetime import datetime
from pathlib import Path

import pytest

from spx.errors import ConfigError
from spx.platform import lifecycle, paths
from spx.platform.driver import checkpoint_folder
from spx.platform.settings import Settings
from spx.platform.store import SweepRow, SweepStatus

EMOJI = "\U0001f600" * 200


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    home = tmp_path / "home"
    return Settings(home, f"sqlite:///{home / 'spx.db'}", f"sqlite:///{home / 'mlflow.db'}", None)


def _sweep(name: str, sweep_id: int = 7) -> SweepRow:
    return SweepRow(
        id=sweep_id,
        name=name,
        task="digits-mlp",
        method="grid",
        spec_text="",
        spec_hash="",
        status=SweepStatus.RUNNING,
        mlflow_experiment_id=None,
        mlflow_run_id=None,
        created_at=datetime(2026, 1, 1),
        started_at=None,
        finished_at=None,
    )


def _derived(settings: Settings, name: str) -> list[Path]:
    """Every file or folder spx derives from a sweep's name, with the folder it belongs in."""
    return [
        paths.log_file(settings, name),
        paths.driver_file(settings, name),
        paths.report_file(settings, name),
        paths.report_plots(settings, name),
        paths.sweep_folder(settings, _sweep(name)),
        paths.artifact_folder(settings.artifacts, name),
    ]


def test_names_that_used_to_collide_get_different_files():
    assert paths.file_name("a;b") != paths.file_name("a|b")
    assert paths.file_name("a;b").startswith("a_b-")  # still readable
    assert paths.file_name("日本語") != paths.file_name("中文")
    assert paths.file_name("Run") != paths.file_name("run")  # case-insensitive file systems
    assert paths.file_name("x" * 60) != paths.file_name("x" * 61)


@pytest.mark.parametrize("name", ["..", "..x", ".", ".hidden", "-rf", "日本語", EMOJI, "a" * 200])
def test_every_name_gets_a_plain_file_name_inside_its_folder(settings, name):
    safe = paths.file_name(name)
    assert re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*-[0-9a-f]{8}", safe), safe
    assert len(safe) <= 49
    for path in _derived(settings, name):
        assert path.resolve().parent == path.parent.resolve()  # no climbing out
        assert not path.name.startswith(".")  # no hidden files
        assert len(path.name.encode()) < 100


def test_lifecycle_and_driver_use_the_same_names(settings):
    sweep = _sweep("a;b")
    assert lifecycle.log_path(settings, "a;b") == paths.log_file(settings, "a;b")
    assert lifecycle.driver_file(settings, "a;b") == paths.driver_file(settings, "a;b")
    assert checkpoint_folder(settings, sweep).name == f"7-{paths.file_name('a;b')}"
    assert lifecycle.trial_dir(settings, sweep, 3) == checkpoint_folder(settings, sweep) / (
        "trial-00003"
    )


def test_files_an_earlier_version_wrote_are_found_under_their_old_names(settings):
    sweep = _sweep("my sweep;1")
    new_folder = checkpoint_folder(settings, sweep)
    old_folder = settings.checkpoints / "7-my_sweep_1"
    old_folder.mkdir(parents=True)
    assert checkpoint_folder(settings, sweep) == old_folder  # resume finds its checkpoints
    assert lifecycle.trial_dir(settings, sweep, 0) == old_folder / "trial-00000"
    assert checkpoint_folder(settings, _sweep("my sweep;1", sweep_id=8)) != old_folder
    new_folder.mkdir()
    assert checkpoint_folder(settings, sweep) == new_folder  # once both exist, the new one

    settings.logs.mkdir(parents=True)
    (settings.logs / "my_sweep_1.log").write_text("old")
    assert paths.find_log(settings, "my sweep;1").read_text() == "old"
    assert paths.log_file(settings, "my sweep;1").name.startswith("my_sweep_1-")  # writes: new

    run = settings.home / "run"
    run.mkdir()
    (run / "my_sweep_1.json").write_text('{"pid": 4242, "host": "h", "started": 1.0}')
    found = lifecycle.find_driver(settings, "my sweep;1")
    assert found is not None and found.pid == 4242
    paths.driver_file(settings, "my sweep;1").write_text('{"pid": 7, "host": "h", "started": 1}')
    found = lifecycle.find_driver(settings, "my sweep;1")
    assert found is not None and found.pid == 7


@pytest.mark.parametrize("name", [EMOJI, ".."])
def test_mlflow_takes_the_exact_name_and_keeps_artifacts_inside_mlartifacts(tmp_path, name):
    from mlflow.tracking import MlflowClient

    from spx.platform.tracking import Tracker

    root = tmp_path / "mlartifacts"
    tracker = Tracker(f"sqlite:///{tmp_path / 'mlflow.db'}", root)
    exp = tracker.experiment(name)
    assert exp is not None and tracker.failures == 0
    run = tracker.start_run(exp, name, {"sweep.method": "grid"}, tags={"spx.sweep": name})
    tracker.log_text(run, "name: x\n", "sweep.yaml")
    assert tracker.failures == 0
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    assert client.get_experiment(exp).name == name
    assert client.get_run(run).info.run_name == name
    written = [p for p in tmp_path.rglob("sweep.yaml")]
    assert len(written) == 1
    assert written[0].is_relative_to(root / paths.file_name(name))


# -- writing an output ------------------------------------------------------------------


def test_write_output_replaces_a_file_only_with_force(tmp_path):
    out = tmp_path / "out.csv"
    paths.write_output(out, "one\n")
    assert out.read_text() == "one\n"
    with pytest.raises(ConfigError, match="--force") as err:
        paths.write_output(out, "two\n")
    assert err.value.field == "--output" and err.value.value == str(out)
    assert out.read_text() == "one\n"
    paths.write_output(out, b"two\n", force=True)
    assert out.read_text() == "two\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.csv"]  # no temporary left


def test_write_output_never_writes_through_a_symlink(tmp_path):
    victim = tmp_path / "victim"
    victim.write_text("keep")
    link = tmp_path / "out.csv"
    link.symlink_to(victim)
    with pytest.raises(ConfigError, match="exists"):
        paths.write_output(link, "new")  # a link counts as an existing file
    paths.write_output(link, "new", force=True)
    assert victim.read_text() == "keep"
    assert not link.is_symlink() and link.read_text() == "new"


@pytest.mark.parametrize("where", ["folder", "missing parent", "parent is a file"])
def test_write_output_refuses_a_bad_path_and_leaves_nothing(tmp_path, where):
    (tmp_path / "file").write_text("x")
    target = {
        "folder": tmp_path,
        "missing parent": tmp_path / "nope" / "out.csv",
        "parent is a file": tmp_path / "file" / "out.csv",
    }[where]
    with pytest.raises(ConfigError) as err:
        paths.write_output(target, "data", force=True)
    assert err.value.field == "--output" and err.value.value == str(target)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]
