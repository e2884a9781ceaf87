"""docs/extending.md "A search strategy" runs as written: its example strategy registers,
passes the conformance suite, and `spx sweep validate` shows the trials the page shows."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
from helpers import REPO, load_test_module

from spx.cli import main
from spx.search.strategies import STRATEGIES

DOC = REPO / "docs" / "extending.md"
conformance = load_test_module("search/test_conformance.py", "spx_tests_search_conformance")


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


@pytest.fixture
def example(tmp_path: Path):
    """The page's strategy file, imported as a module (which registers it); unregistered
    afterwards so no other test sees it."""
    (code,) = _blocks(_section("A search strategy"), "python")
    path = tmp_path / "one_at_a_time.py"
    path.write_text(code)
    before = dict(STRATEGIES)
    spec = importlib.util.spec_from_file_location("spx_doc_one_at_a_time", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    try:
        spec.loader.exec_module(module)
        (added,) = set(STRATEGIES) - set(before)
        yield added
    finally:
        STRATEGIES.clear()
        STRATEGIES.update(before)
        sys.modules.pop(spec.name, None)


def test_the_example_strategy_passes_the_conformance_suite(example, tmp_path):
    assert example == "one-at-a-time"
    for name in dir(conformance):
        test = getattr(conformance, name)
        if not name.startswith("test_"):
            continue
        if "conditional" in test.__code__.co_varnames[: test.__code__.co_argcount]:
            for conditional in (False, True):
                (tmp_path / str(conditional)).mkdir()
                test(example, conditional, tmp_path / str(conditional))
        else:
            test(example)


def test_validate_shows_the_trials_the_page_shows(example, tmp_path, monkeypatch, capsys):
    section = _section("A search strategy")
    (sweep,) = _blocks(section, "yaml")
    shown = [b for b in _blocks(section, "") if b.startswith("ok: ")]
    (tmp_path / "screening.yaml").write_text(sweep)
    monkeypatch.setenv("SPX_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    argv = ["spx", "sweep", "validate", str(tmp_path / "screening.yaml"), "--show", "6"]
    monkeypatch.setattr(sys, "argv", argv)
    with pytest.raises(SystemExit) as exit_info:
        main()
    out = capsys.readouterr().out
    assert exit_info.value.code in (0, None), out
    wanted = [line.strip() for line in shown[0].splitlines() if line.strip()]
    printed = [line.strip() for line in out.splitlines()]
    assert printed[0] == wanted[0]
    assert [p for p in printed if p.startswith("trial ")] == wanted[1:]
