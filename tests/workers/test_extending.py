"""docs/extending.md "A pruning method" runs as written: its code is the shipped SNIP file,
it runs as a method of its own through the conformance suite and a one-trial run, and
`spx sweep validate` shows the trials the page shows."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
from helpers import REPO, load_test_module

from spx.cli import main
from spx.workers.config import TrialConfig
from spx.workers.loop import ListReporter, train
from spx.workers.methods import METHODS, register
from spx.workers.tasks import build_task

DOC = REPO / "docs" / "extending.md"
conformance = load_test_module("workers/test_conformance.py", "spx_tests_workers_conformance")


def _section(title: str) -> str:
    text = DOC.read_text()
    start = text.index(f"## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else len(text)]


def _blocks(section: str, lang: str) -> list[str]:
    """The fenced blocks whose info string is ``lang`` ("" for a bare fence), in order."""
    blocks: list[str] = []
    info, body = None, []
    for line in section.splitlines(keepends=True):
        if line.startswith("```"):
            if info is None:
                info, body = line[3:].strip(), []
                continue
            if info == lang:
                blocks.append("".join(body))
            info = None
        elif info is not None:
            body.append(line)
    return blocks


def test_the_page_shows_the_shipped_file_and_its_registration():
    section = _section("A pruning method")
    (code,) = _blocks(section, "python")
    assert code == (REPO / "workers" / "snip.py").read_text()
    registration = _blocks(section, "")[0].strip()
    assert registration in (REPO / "workers" / "methods.py").read_text().splitlines()
    assert METHODS["snip"].__module__ == "spx.workers.snip"


@pytest.fixture
def example(tmp_path: Path):
    """The page's code run from its own file, registered as ``doc-snip`` (the shipped one
    keeps ``snip``); unregistered afterwards so no other test sees it."""
    (code,) = _blocks(_section("A pruning method"), "python")
    path = tmp_path / "doc_snip.py"
    path.write_text(code)
    spec = importlib.util.spec_from_file_location("spx_doc_snip", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    before = dict(METHODS)
    try:
        spec.loader.exec_module(module)
        register(type("DocSNIP", (module.SNIP,), {"name": "doc-snip", "__doc__": "The page's."}))
        yield "doc-snip"
    finally:
        METHODS.clear()
        METHODS.update(before)
        sys.modules.pop(spec.name, None)


def test_the_documented_method_passes_the_conformance_suite(example, tmp_path, monkeypatch):
    for optimizer in ("adamw", "sgd"):
        conformance.test_masks_stay_exact_and_nothing_masked_revives(example, optimizer)
    conformance.test_save_and_restore_round_trip(example, tmp_path)
    conformance.test_masks_before_the_first_forward_pass_are_what_the_flags_say(example)
    conformance.test_a_method_follows_prune_schedule_exactly_when_flagged(example)
    for stage in (1, 2):
        conformance.test_zero_stages_are_the_ones_the_config_allows(example, stage, monkeypatch)


def test_the_documented_method_trains_a_trial_to_its_target(example):
    flat = {"train.steps": 30, "model.width": 32, "prune.method": example}
    cfg = TrialConfig.from_flat("digits-mlp", {**flat, "prune.sparsity": 0.9})
    final = train(cfg, build_task("digits-mlp"), ListReporter())
    assert final["model/sparsity"] == pytest.approx(0.9, abs=0.005)
    assert final["val/acc"] > 0.15  # chance is 0.1


def test_validate_shows_the_trials_the_page_shows(tmp_path, monkeypatch, capsys):
    section = _section("A pruning method")
    (sweep,) = _blocks(section, "yaml")
    shown = [b for b in _blocks(section, "") if b.startswith("ok: ")]
    (tmp_path / "snip.yaml").write_text(sweep)
    monkeypatch.setenv("SPX_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    argv = ["spx", "sweep", "validate", str(tmp_path / "snip.yaml"), "--show", "4"]
    monkeypatch.setattr(sys, "argv", argv)
    with pytest.raises(SystemExit) as exit_info:
        main()
    out = capsys.readouterr().out
    assert exit_info.value.code in (0, None), out
    wanted = [line.strip() for line in shown[0].splitlines() if line.strip()]
    printed = [line.strip() for line in out.splitlines()]
    assert printed[0] == wanted[0]
    assert [p for p in printed if p.startswith("trial ")] == wanted[1:]
