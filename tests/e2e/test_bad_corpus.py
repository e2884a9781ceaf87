"""The malformed-sweep corpus (tests/e2e/bad_sweeps): every file exits 2 naming its field.

Each file's first line is text the message must contain (`# expect: TEXT`): the field, and
for the strict-input files (a boolean or text where a number goes, a key given twice, a
grace no trial outlasts, an echoed value cut short) the message itself. Files that cannot
carry a comment (binary junk) must name `file`. Runs the CLI's own `main` in
this process (the subprocess path is covered by test_bad_input.py) so the corpus stays
fast.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from spx.cli import main

CORPUS = sorted((Path(__file__).parent / "bad_sweeps").glob("*.yaml"))


def _expected(path: Path) -> str:
    head = path.read_bytes().split(b"\n", 1)[0]
    if head.startswith(b"# expect: "):
        return head.removeprefix(b"# expect: ").decode("utf-8").strip()
    return "file"


def test_the_corpus_is_large_enough():
    assert len(CORPUS) >= 30


@pytest.mark.parametrize("path", CORPUS, ids=lambda p: p.stem)
def test_malformed_sweep_exits_2_naming_the_field(path, tmp_path, monkeypatch, capsys):
    home = tmp_path / "home"
    monkeypatch.setenv("SPX_HOME", str(home))
    monkeypatch.setattr(sys, "argv", ["spx", "sweep", "launch", str(path)])
    with pytest.raises(SystemExit) as exit_info:
        main()
    err = capsys.readouterr().err
    assert exit_info.value.code == 2, err
    assert _expected(path) in err, err
    assert "Traceback" not in err
    assert not home.exists()  # no store, no MLflow database, no rows anywhere
