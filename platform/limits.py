"""Bounds on a sweep file: its bytes, its YAML, its grid. A hostile file fails here, cheaply.

A sweep file is read with at most ``MAX_FILE_BYTES + 1`` bytes in memory; its YAML may nest
``MAX_DEPTH`` levels and expand to ``MAX_NODES`` values, counting each alias as the whole
node it repeats (so 400 bytes of aliases cannot stand for 10^9 strings); a grid is counted,
not built, and may have ``SPX_MAX_GRID`` points (default 100 000), replicate seeds and NAS
arms included. This module imports neither torch nor the trial config, so ``spx sweep
validate`` runs :func:`precheck` before them and a refused file costs a few megabytes.

>>> load_yaml("a: &x [1, 2]\\nb: *x")
{'a': [1, 2], 'b': [1, 2]}
>>> load_yaml("[" * 100 + "]" * 100)
Traceback (most recent call last):
spx.errors.ConfigError: file: the YAML nests deeper than 64 levels (at line 1)
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import yaml

from spx.errors import ConfigError
from spx.search.space import Categorical, Condition, Conditions, grid_size, search_order

MAX_FILE_BYTES = 1_000_000
MAX_DEPTH = 64
MAX_NODES = 500_000
"""As many values as a plain file of MAX_FILE_BYTES can hold (``1,`` per value): only
aliases can go past it."""
GRID_CAP_ENV = "SPX_MAX_GRID"
DEFAULT_GRID_CAP = 100_000


def read_text(path: Path) -> str:
    """The sweep file's text; too large a file is refused by its size, before it is read."""
    if not path.is_file():
        raise ConfigError("sweep file not found", field="file", value=str(path))
    size = path.stat().st_size
    with path.open("rb") as f:
        raw = f.read(MAX_FILE_BYTES + 1) if size <= MAX_FILE_BYTES else b""
    if size > MAX_FILE_BYTES or len(raw) > MAX_FILE_BYTES:  # the second: it grew meanwhile
        raise ConfigError(
            f"sweep file is {max(size, len(raw))} bytes, larger than the {MAX_FILE_BYTES} "
            "bytes a sweep file may have",
            field="file",
            value=str(path),
        )
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError("sweep file is not UTF-8 text", field="file", value=str(path)) from None


class _BoundedLoader(yaml.SafeLoader):
    """PyYAML's safe loader (no tags) that counts as it composes, refuses a key given twice
    in one mapping, and reads plain scalars by YAML 1.2's core schema.

    ``_expanded`` is the number of values the document stands for, an alias adding the
    whole size of its anchor's node; composing stops as soon as it passes MAX_NODES.

    YAML 1.1 (PyYAML's default) reads ``yes``/``no``/``on``/``off`` as booleans, ``2:4`` as
    the integer 124 (base 60), ``010`` as 8 and dates as dates, while ``1e-3`` stays text:
    each lets a typo become a number that runs. Under the core schema only ``true``/``false``
    are booleans, ``1e-3`` is a float, and the rest are the text they look like.
    """

    def __init__(self, stream: str):
        super().__init__(stream)
        self._depth = 0
        self._expanded = 0
        self._anchor_sizes: dict[str, int] = {}

    def compose_node(self, parent: Any, index: Any) -> Any:
        event = self.peek_event()
        line = event.start_mark.line + 1
        if isinstance(event, yaml.AliasEvent):
            if event.anchor in self._anchor_sizes:
                self._count(self._anchor_sizes[event.anchor], line)
            elif event.anchor in self.anchors:  # its anchor's node is still being composed
                raise ConfigError(
                    f"the YAML alias *{event.anchor} repeats a node that contains it "
                    f"(at line {line})",
                    field="file",
                )
            return super().compose_node(parent, index)
        self._depth += 1
        if self._depth > MAX_DEPTH:
            raise ConfigError(
                f"the YAML nests deeper than {MAX_DEPTH} levels (at line {line})", field="file"
            )
        before = self._expanded
        self._count(1, line)
        node = super().compose_node(parent, index)
        self._depth -= 1
        if event.anchor is not None:
            self._anchor_sizes[event.anchor] = self._expanded - before
        return node

    def construct_mapping(self, node: Any, deep: bool = False) -> Any:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge" or not isinstance(
                key_node, yaml.ScalarNode
            ):
                continue  # `<<: *base` keys are meant to be overridden
            key = (key_node.tag, key_node.value)
            line = key_node.start_mark.line + 1
            if key in seen:
                raise ConfigError(
                    f"this key is given twice in one mapping (lines {seen[key]} and {line}); "
                    "keep one",
                    field=key_node.value,
                )
            seen[key] = line
        return super().construct_mapping(node, deep)

    def _count(self, values: int, line: int) -> None:
        self._expanded += values
        if self._expanded > MAX_NODES:
            raise ConfigError(
                f"the YAML expands to more than {MAX_NODES} values (its aliases repeat what "
                f"their anchors hold; at line {line})",
                field="file",
            )


def _core_int(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> int:
    """An integer as YAML 1.2 reads it: decimal (leading zeros allowed), 0o octal, 0x hex."""
    text = loader.construct_scalar(node)
    sign, digits = (-1, text[1:]) if text[:1] == "-" else (1, text.lstrip("+"))
    if digits[:2] in ("0o", "0x"):
        return sign * int(digits[2:], 8 if digits[1] == "o" else 16)
    if digits.isdigit():
        return sign * int(digits)
    return int(loader.construct_yaml_int(node))  # an explicit !!int tag on other text


_BoundedLoader.yaml_implicit_resolvers = {}  # YAML 1.2 core schema, replacing YAML 1.1's
for _tag, _pattern, _first in (
    ("bool", r"true|True|TRUE|false|False|FALSE", "tTfF"),
    ("int", r"[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+", "-+0123456789"),
    (
        "float",
        r"[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?"
        r"|[-+]?\.(inf|Inf|INF)|\.nan|\.NaN|\.NAN",
        "-+0123456789.",
    ),
    ("null", r"~|null|Null|NULL|", ["~", "n", "N", ""]),
    ("merge", r"<<", "<"),
):
    _BoundedLoader.add_implicit_resolver(
        f"tag:yaml.org,2002:{_tag}", re.compile(rf"^(?:{_pattern})$"), list(_first)
    )
_BoundedLoader.add_constructor("tag:yaml.org,2002:int", _core_int)


def load_yaml(text: str) -> Any:
    """Parse a sweep file's YAML with the safe loader, within MAX_DEPTH and MAX_NODES."""
    loader = _BoundedLoader(text)
    try:
        return loader.get_single_data()
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError(f"not valid YAML{where}: {getattr(exc, 'problem', exc)}") from None
    except ValueError as exc:  # e.g. an integer past Python's 4300-digit conversion limit
        raise ConfigError(f"not valid YAML: {exc}", field="file") from None
    finally:
        loader.dispose()


def grid_cap() -> int:
    """The most grid points a sweep may have: ``SPX_MAX_GRID``, default 100 000."""
    text = os.environ.get(GRID_CAP_ENV) or str(DEFAULT_GRID_CAP)
    try:
        cap = int(text)
    except ValueError:
        cap = 0
    if cap < 1:
        raise ConfigError("must be a whole number above 0", field=GRID_CAP_ENV, value=text)
    return cap


def check_grid(
    space: dict[str, Categorical], conditions: Conditions = (), runs_per_point: int = 1
) -> None:
    """Refuse a grid of more than :func:`grid_cap` runs (points x seeds x arms), by count."""
    cap = grid_cap()
    points, exact = grid_size(space, conditions, cap // runs_per_point + 1)
    runs = points * runs_per_point
    if runs <= cap:
        return
    size = f"{points} points" if exact else f"more than {points} points"
    if runs_per_point > 1:
        size += f" x {runs_per_point} runs each (replicate seeds, NAS arms)"
    raise ConfigError(
        f"the grid has {size}, more than the {cap} runs a sweep may have "
        f"(set {GRID_CAP_ENV} to allow more)",
        field="parameters",
    )


def precheck(path: Path) -> None:
    """What a hostile file fails on, checked before torch is imported: its size, its YAML,
    the size of a ``method: grid`` space. The full validation (spec.py) repeats them."""
    data = load_yaml(read_text(path))
    if not isinstance(data, dict) or data.get("method", "grid") != "grid":
        return
    raw = _raw_grid(data)
    if raw is None:
        return
    try:
        search_order(raw[0], raw[1])
    except ConfigError:  # conditions that do not fit the space: the full check names them
        return
    check_grid(*raw)


def _raw_grid(data: dict[Any, Any]) -> tuple[dict[str, Categorical], Conditions, int] | None:
    """The grid's axes, conditions and seed count from the unvalidated mapping; None when
    any of them is malformed (the full check then says so)."""
    params, conds, reps = (data.get(k) or {} for k in ("parameters", "conditions", "replicates"))
    if not (isinstance(params, dict) and isinstance(conds, dict) and isinstance(reps, dict)):
        return None
    space: dict[str, Categorical] = {}
    for key, axis in params.items():
        values = axis.get("values") if isinstance(axis, dict) else None
        if not (isinstance(values, list) and values):
            return None
        space[str(key)] = Categorical(tuple(values))
    conditions: list[Condition] = []
    for key, parents in conds.items():
        if not isinstance(parents, dict):
            return None
        for parent, v in parents.items():
            conditions.append(Condition(key, parent, tuple(v) if isinstance(v, list) else (v,)))
    seeds = reps.get("seeds")
    return space, tuple(conditions), len(seeds) if isinstance(seeds, list) and seeds else 1
