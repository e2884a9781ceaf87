r"""How ``spx`` commands print tables: a rich table on a terminal, tab-separated lines elsewhere.

Off a terminal (a pipe, a file) a table is one header line and one line per row, its
cells separated by tabs and never cut; a float is written as Python's ``repr``, the
shortest text that reads back as the same double, so ``spx sweep list | grep NAME`` and
``cut -f`` see every value as the store holds it. A tab, newline, carriage return or
backslash inside a cell is written ``\t``, ``\n``, ``\r``, ``\\`` (PostgreSQL's text
format does the same), so a row stays one line. On a terminal floats get 4 significant
digits and a long cell folds onto the next line instead of being cut.

A reader that closes the pipe early (``spx query --csv ... | head -1``) ends the command
quietly with exit code 0: it asked for no more, and under ``set -o pipefail`` a 141 (the
SIGPIPE death of other tools) would fail a pipeline that did what it was meant to.

>>> import io
>>> buffer = io.StringIO()
>>> print_table(Console(file=buffer), ["name", "note", "lr"], [["a\tb", None, 0.1 + 0.2]])
>>> buffer.getvalue().splitlines()
['name\tnote\tlr', 'a\\tb\t\t0.30000000000000004']
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import NoReturn

from rich.console import Console
from rich.table import Table
from rich.text import Text

_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


class PipeConsole(Console):
    """A rich console whose closed pipe ends the command quietly (exit 0), as
    :func:`closed_pipe` does; rich's own default exits 1."""

    def on_broken_pipe(self) -> None:
        closed_pipe()


def is_terminal(console: Console) -> bool:
    """Whether ``console`` writes to a terminal (its file's ``isatty``)."""
    isatty = getattr(console.file, "isatty", None)
    return bool(isatty and isatty())


def print_table(
    console: Console,
    columns: Sequence[str],
    rows: Iterable[Sequence[object]],
    title: str | None = None,
) -> None:
    """Print ``rows`` under ``columns``: rich on a terminal, tab-separated lines elsewhere
    (``title`` only on a terminal). Cells are raw values: None prints empty, floats as the
    module docstring says, lists and dicts as JSON."""
    if is_terminal(console):
        table = Table(title=title)
        for name in columns:
            table.add_column(Text(str(name)), overflow="fold")
        for row in rows:  # Text: a name like "run[b]" is no markup
            table.add_row(*(Text(cell_text(v, terminal=True)) for v in row))
        console.print(table)
        return
    out = console.file
    with reader_may_close(out):
        out.write("\t".join(str(c).translate(_ESCAPES) for c in columns) + "\n")
        for row in rows:
            out.write("\t".join(cell_text(v, terminal=False) for v in row) + "\n")


def cell_text(value: object, terminal: bool) -> str:
    """One cell as it is printed on a terminal (``terminal``) or in a pipe.

    >>> cell_text(0.123456789, terminal=False), cell_text(0.123456789, terminal=True)
    ('0.123456789', '0.1235')
    >>> cell_text([16, 32], terminal=False), cell_text(True, terminal=False)
    ('[16, 32]', 'true')
    """
    if value is None:
        text = ""
    elif isinstance(value, float):
        text = f"{value:.4g}" if terminal else repr(value)
    elif isinstance(value, bool | list | dict):
        text = json.dumps(value)  # as the sweep file and --json spell it
    else:
        text = str(value)
    return text if terminal else text.translate(_ESCAPES)


def write_text(text: str) -> None:
    """Write ``text`` (a JSON document, say) and a newline to stdout, pipe-safe."""
    with reader_may_close(sys.stdout):
        sys.stdout.write(text + "\n")


@contextmanager
def reader_may_close(stream=None) -> Iterator[None]:
    """Writes to stdout in this block end the command quietly (exit 0) when its reader
    has gone; the block's output is flushed before it ends."""
    try:
        yield
        (stream or sys.stdout).flush()
    except BrokenPipeError:
        closed_pipe()


def closed_pipe() -> NoReturn:
    """Stop writing to stdout, whose reader has gone, and exit 0. Its file descriptor is
    pointed at /dev/null so that the interpreter's last flush cannot fail too."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):  # stdout is no real file (a test's buffer)
        pass
    finally:
        os.close(devnull)
    raise SystemExit(0)
