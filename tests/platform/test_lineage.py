"""``init.from``: a sweep that starts from another sweep's trial, resolved against a real
SQLite store before any trial runs. The source trials really trained (the loop, a few
steps) and left real checkpoints; no Ray: the trial side is the loop's ``build_state``.
"""

from __future__ import annotations

import doctest
import shutil
import sys

import pytest
import torch
from safetensors.torch import load_file

from spx.cli import main
from spx.errors import ConfigError
from spx.platform import lineage, paths
from spx.platform.replay import replay_spec
from spx.platform.schema import sweep_schema
from spx.platform.settings import Settings
from spx.platform.spec import parse_spec, trial_config
from spx.platform.store import Store, SweepStatus, TrialStatus
from spx.workers import warmstart
from spx.workers.config import TrialConfig
from spx.workers.loop import ListReporter, build_state, train
from spx.workers.tasks import build_task

SOURCE = "name: pre\ntask: digits-mlp\nobjective: {metric: val/loss, goal: minimize}\n"
KEYS = {
    "train.steps": 3,
    "model.width": 16,
    "prune.method": "magnitude",
    "prune.sparsity": 0.5,
    "prune.schedule.kind": "one-shot",
}
STAGE2 = """
name: post
task: digits-mlp
fixed:
  train.steps: 2
  model.width: {width}
  prune.method: magnitude
  prune.sparsity: 0.5
  init.from: {source}
"""


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """An SPX_HOME whose store has sweep ``pre``: trials 0 and 1 COMPLETED (1 the best by
    val/loss, as its objective says), 2 still RUNNING; the sweep itself finished."""
    root = tmp_path_factory.mktemp("lineage") / "home"
    settings = Settings(root, f"sqlite:///{root / 'spx.db'}", "", None)
    with Store.open(settings.store_url) as store:
        sweep = store.create_sweep(
            "pre", task="digits-mlp", method="grid", spec_text=SOURCE, spec_hash="0" * 64
        )
        task = build_task("digits-mlp", settings.home / "data")
        for number, loss in ((0, 0.9), (1, 0.4), (2, None)):
            cfg = TrialConfig.from_flat("digits-mlp", {**KEYS, "train.seed": number})
            trial = store.add_trial(sweep.id, number, cfg.flat())
            if loss is None:
                store.update_trial(trial.id, status=TrialStatus.RUNNING, started=True)
                continue
            folder = paths.trial_folder(paths.sweep_folder(settings, sweep), number)
            train(cfg, task, ListReporter(), folder / "checkpoint")
            store.update_trial(
                trial.id, status=TrialStatus.COMPLETED, metrics={"val/loss": loss}, finished=True
            )
        store.update_sweep(sweep.id, status=SweepStatus.COMPLETED, finished=True)
    return root


@pytest.fixture
def home(trained, tmp_path):
    """A copy of that SPX_HOME of the test's own."""
    copy = shutil.copytree(trained, tmp_path / "home")
    return Settings(copy, f"sqlite:///{copy / 'spx.db'}", "", None)


def _stage2(source: str, width: int = 16):
    return parse_spec(STAGE2.format(source=source, width=width))


def test_stage2_trials_start_from_the_best_trials_exported_weights_and_masks(home):
    with Store.open(home.store_url) as store:
        bound = lineage.bind(_stage2("{sweep: pre, trial: best}"), store, home)
        (pre,) = store.list_sweeps()
        best = store.trials(pre.id)[1]
    cfg = trial_config(bound, {})
    folder = lineage.cache_folder(home, pre, 1)
    assert cfg.init.folder == str(folder)
    assert (cfg.init.sweep, cfg.init.trial) == ("pre", 1)
    assert cfg.init.config_hash == lineage.config_hash(best.params)
    exported = load_file(str(folder / "model.safetensors"))
    assert cfg.init.sha256 == lineage.file_sha256(folder / "model.safetensors")

    state = build_state(cfg, build_task("digits-mlp", home.home / "data"))
    loaded = state.model.state_dict()
    assert loaded.keys() == exported.keys()
    for name, tensor in exported.items():
        assert torch.equal(loaded[name], tensor), name
    # The source pruned half of each layer: those zeros start pruned, and stay so.
    for name, mask in state.pruner.masks.masks.items():
        assert torch.equal(mask, exported[name] != 0)
        assert 0.45 < 1 - mask.float().mean() < 0.55

    # A second sweep from the same trial reuses the export: nothing is written again.
    written = (folder / "model.safetensors").stat().st_mtime_ns
    with Store.open(home.store_url) as store:
        again = lineage.bind(_stage2("{sweep: pre, trial: 1}"), store, home)
    assert trial_config(again, {}).init.sha256 == cfg.init.sha256
    assert (folder / "model.safetensors").stat().st_mtime_ns == written


@pytest.mark.parametrize(
    ("source", "says"),
    [
        ("{sweep: nope, trial: 0}", "no sweep named 'nope' in the store"),
        ("{sweep: pre, trial: 7}", "sweep 'pre' has no trial 7 (its trials: 0-2)"),
        ("{sweep: pre, trial: 2}", "trial 2 of sweep 'pre' is RUNNING, not COMPLETED"),
    ],
)
def test_a_missing_or_unfinished_source_is_a_config_error_naming_it(home, source, says):
    with Store.open(home.store_url) as store, pytest.raises(ConfigError) as err:
        lineage.check(_stage2(source), store, home)
    assert err.value.field == "fixed.init.from"
    assert says in str(err.value)
    assert str(err.value.value["sweep"]) in str(err.value)  # the value is echoed


def test_a_running_source_sweep_is_refused_saying_how_far_it_got(home):
    with Store.open(home.store_url) as store:
        store.update_sweep(store.get_sweep("pre").id, status=SweepStatus.RUNNING)
        with pytest.raises(ConfigError) as err:
            lineage.check(_stage2("{sweep: pre, trial: best}"), store, home)
    assert err.value.field == "fixed.init.from"
    assert "the source sweep 'pre' is still RUNNING (2 of its 3 trials done so far)" in str(
        err.value
    )
    assert "launch this sweep again once it has finished" in str(err.value)


def test_another_architecture_names_the_tensor_and_both_shapes(home):
    with Store.open(home.store_url) as store, pytest.raises(ConfigError) as err:
        lineage.check(_stage2("{sweep: pre, trial: 0}", width=32), store, home)
    assert err.value.field == "fixed.init.from"
    assert "tensor net.0.weight is [16, 64] in the source but [32, 64]" in str(err.value)
    assert not (home.home / "models").exists()


def test_an_exported_folder_is_a_source_and_a_mismatch_fails_the_trial_too(home, tmp_path):
    with Store.open(home.store_url) as store:
        lineage.bind(_stage2("{sweep: pre, trial: 0}"), store, home)
        folder = lineage.cache_folder(home, store.get_sweep("pre"), 0)
        source = lineage.check(_stage2(str(folder)), None, home)
    assert source is not None and (source.sweep, source.trial) == ("pre", 0)
    with Store.open(home.store_url) as store:
        assert source.config_hash == lineage.config_hash(store.trials(1)[0].params)
    # A trial whose config slipped past launch's check still refuses to load it.
    cfg = TrialConfig.from_flat("digits-mlp", {"model.width": 32, "init.folder": str(folder)})
    with pytest.raises(ConfigError, match="init.from: not this trial's architecture"):
        build_state(cfg, build_task("digits-mlp", home.home / "data"))


def _spx(home: Settings, monkeypatch, capsys, *args: str) -> tuple[int, str]:
    monkeypatch.setenv("SPX_HOME", str(home.home))
    for var in ("SPX_STORE_URL", "MLFLOW_TRACKING_URI", "RAY_ADDRESS"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(sys, "argv", ["spx", *args])
    with pytest.raises(SystemExit) as exit_info:
        main()
    captured = capsys.readouterr()
    return int(exit_info.value.code or 0), captured.err + captured.out


def test_validate_exits_2_naming_init_from_and_writes_nothing(home, tmp_path, monkeypatch, capsys):
    sweep = tmp_path / "post.yaml"
    sweep.write_text(_text("{sweep: pre, trial: 5}"))
    code, err = _spx(home, monkeypatch, capsys, "sweep", "validate", str(sweep))
    assert code == 2
    assert "fixed.init.from: sweep 'pre' has no trial 5" in err
    assert not (home.home / "models").exists()


def test_validate_says_which_trial_launch_will_start_from(home, tmp_path, monkeypatch, capsys):
    sweep = tmp_path / "post.yaml"
    sweep.write_text(_text("{sweep: pre, trial: best}"))
    code, out = _spx(home, monkeypatch, capsys, "sweep", "validate", str(sweep))
    assert code == 0, out
    assert "init.from: starts from sweep 'pre' trial 1, config " in out
    assert not (home.home / "models").exists()  # validate exports nothing


def test_launch_from_a_running_sweep_exits_2_and_records_nothing(
    home, tmp_path, monkeypatch, capsys
):
    with Store.open(home.store_url) as store:
        store.update_sweep(store.get_sweep("pre").id, status=SweepStatus.RUNNING)
    sweep = tmp_path / "post.yaml"
    sweep.write_text(_text("{sweep: pre, trial: 1}"))
    code, err = _spx(home, monkeypatch, capsys, "sweep", "launch", str(sweep), "--plain")
    assert code == 2
    assert "fixed.init.from: the source sweep 'pre' is still RUNNING" in err
    with Store.open(home.store_url) as store:
        assert [s.name for s in store.list_sweeps()] == ["pre"]
    assert not (home.home / "models").exists()


def test_a_replay_starts_from_the_same_source(home):
    with Store.open(home.store_url) as store:
        text = _text("{sweep: pre, trial: best}")
        bound = lineage.bind(parse_spec(text), store, home)
        post = store.create_sweep(
            "post", task="digits-mlp", method="grid", spec_text=text, spec_hash="0" * 64
        )
        store.add_trial(post.id, 0, trial_config(bound, {}).flat())
        spec, _ = replay_spec(store, "post", "post-replay")
        again = lineage.bind(spec, store, home)
    assert spec.fixed == {"init.from.sweep": "pre", "init.from.trial": "best"}
    assert trial_config(again, {}).init == trial_config(bound, {}).init


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ("parameters: {init.from.trial: {values: [0, 1]}}", "parameters.init.from.trial"),
        ("fixed: {init.sha256: abc}", "fixed.init.sha256"),
        ("fixed: {init.from: {sweep: pre}}", "fixed.init.from.trial"),
        ("fixed: {init.from: {sweep: pre, trial: true}}", "fixed.init.from.trial"),
    ],
)
def test_init_keys_a_sweep_file_cannot_set(text, field):
    with pytest.raises(ConfigError) as err:
        parse_spec(f"name: x\ntask: digits-mlp\n{text}\n")
    assert err.value.field == field


def test_a_transformers_folder_points_at_model_path(home, tmp_path):
    (tmp_path / "hf").mkdir()
    (tmp_path / "hf" / "config.json").write_text("{}")
    with pytest.raises(ConfigError) as err:
        lineage.check(_stage2(str(tmp_path / "hf")), None, home)
    assert err.value.field == "fixed.init.from" and err.value.value == str(tmp_path / "hf")
    assert "task hf-causal-lm's model.path" in str(err.value)


def test_the_schema_offers_init_from_and_not_the_keys_spx_sets():
    names = sweep_schema()["properties"]["fixed"]["propertyNames"]["enum"]
    assert {"init.from", "init.from.sweep", "init.from.trial", "init.from.path"} <= set(names)
    assert not set(names) & set(lineage.RESOLVED)


def test_the_warmstart_docstring_example_runs():
    result = doctest.testmod(warmstart)
    assert result.attempted and not result.failed


def _text(source: str) -> str:
    return STAGE2.format(source=source, width=16)
