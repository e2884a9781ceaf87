"""The lexical check of a statement the user wrote for ``spx query``: the outermost of the
guards in ``spx.platform.readonly``, and the only one against what every role may do
(advisory locks) or what a superuser could undo (``set_config('role', ...)``).

It reads the SQL the way the server's lexer does: comments dropped (PostgreSQL's nest),
'...' strings with doubled quotes, PostgreSQL's E'...' (backslash escapes) and $tag$
dollar quotes, "quoted" names (SQLite's [..] and `..` too). Unclosed text is refused.

>>> check_read_sql("/* best */ SELECT 1;", "postgresql")
>>> check_read_sql("SELECT 1; DELETE FROM trials", "sqlite")
Traceback (most recent call last):
...
spx.errors.ConfigError: query: exactly one statement is allowed; this text has 2 ...
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from spx.errors import ConfigError

__all__ = ["check_read_sql"]

_READ_STARTS = {"select", "with", "values", "table"}
_READS = "a query is one SELECT, WITH ... SELECT, VALUES, TABLE, or EXPLAIN of one of those"
# Statements neither read nor in _WRITE_WORDS (transactions, settings, sessions, ...).
_OTHER_COMMANDS = {
    "begin", "start", "commit", "end", "rollback", "abort", "savepoint", "release", "set",
    "reset", "show", "lock", "do", "prepare", "deallocate", "discard", "load", "cluster",
    "comment", "security", "import", "declare", "fetch", "move", "close", "analyze",
    "analyse", "replace", "unlisten", "reassign",
}  # fmt: skip
_EXPLAIN_WORDS = {"analyze", "analyse", "verbose", "query", "plan"}  # EXPLAIN options
_WRITE_WORDS = {
    "insert", "update", "delete", "merge", "into", "copy", "truncate", "create", "drop",
    "alter", "grant", "revoke", "call", "execute", "attach", "detach", "vacuum", "pragma",
    "reindex", "refresh", "notify", "listen", "checkpoint",
}  # fmt: skip
# Functions no read needs: files, programs, large objects, advisory locks, other servers,
# settings (set_config could undo the role drop), other backends, and those that run SQL
# given as a string (query_to_xml, ts_stat, ts_rewrite, crosstab), which could hide any of it.
_DENIED_FUNCTION = re.compile(
    r"(lo_\w*|loread|lowrite|pg_read_\w*|pg_ls_\w*|pg_stat_file|pg_file_\w*"
    r"|pg_(try_)?advisory_\w*|dblink\w*|set_config|query_to_xml\w*|cursor_to_xml\w*"
    r"|ts_stat|ts_rewrite|crosstab\w*|connectby|xpath_table|pg_terminate_backend"
    r"|pg_cancel_backend|pg_reload_conf|pg_rotate_logfile|pg_logical_\w*|pg_notify"
    r"|pg_switch_wal|pg_promote|pg_create_\w*|pg_drop_\w*|pg_replication_\w*|pg_backup_\w*"
    r"|load_extension|readfile|writefile|edit|fts3_tokenizer)"
)


_Kind = Literal["word", "ident", "string", "number", "punct"]  # word: lower-cased


@dataclass(frozen=True)
class _Token:
    kind: _Kind  # ident: a "quoted" name; string: any literal (its text is not kept)
    text: str


def check_read_sql(sql: str, dialect: str) -> None:
    """ConfigError on ``query`` unless ``sql`` is exactly one statement, a read (SELECT,
    WITH ... SELECT, VALUES, TABLE, or EXPLAIN of one of those), that names no write keyword
    and no function reaching files, programs, large objects, locks, settings, other servers,
    or SQL of its own in a string. Example: see the module docstring.
    """
    if not sql.strip():
        raise ConfigError("the query is empty", field="query", value=sql)
    tokens = _tokens(sql, dialect)
    while tokens and tokens[-1] == _SEMICOLON:
        tokens.pop()
    if not tokens:
        raise ConfigError("the query is empty (only comments)", field="query", value=_clip(sql))
    if _SEMICOLON in tokens:
        count = 1 + tokens.count(_SEMICOLON)
        raise ConfigError(
            f"exactly one statement is allowed; this text has {count}",
            field="query",
            value=_clip(sql),
        )
    _check_start(tokens, sql)
    for i, token in enumerate(tokens):
        name = token.text.lower()
        if token.kind not in ("word", "ident"):
            continue
        # A quoted name is never a keyword, but it can still name (call) a function.
        locking = name == "for" and _next_word(tokens, i) in ("share", "key", "no")
        if token.kind == "word" and (name in _WRITE_WORDS or locking):
            raise _refused_write(sql)
        if _DENIED_FUNCTION.fullmatch(name):
            raise ConfigError(
                f"{name!r} is not allowed: spx query reads the store's tables, and no files, "
                "programs, large objects, locks, settings or other servers",
                field="query",
                value=_clip(sql),
            )


_SEMICOLON, _OPEN, _CLOSE = _Token("punct", ";"), _Token("punct", "("), _Token("punct", ")")


def _check_start(tokens: list[_Token], sql: str) -> None:
    i = _skip_opens(tokens, 0)
    if i < len(tokens) and tokens[i] == _Token("word", "explain"):
        i += 1
        if i < len(tokens) and tokens[i] == _OPEN:  # EXPLAIN (ANALYZE, FORMAT JSON) ...
            depth = 0
            while i < len(tokens):
                depth += (tokens[i] == _OPEN) - (tokens[i] == _CLOSE)
                i += 1
                if depth == 0:
                    break
        while i < len(tokens) and tokens[i].kind == "word" and tokens[i].text in _EXPLAIN_WORDS:
            i += 1
        i = _skip_opens(tokens, i)
    first = tokens[i].text if i < len(tokens) and tokens[i].kind == "word" else ""
    if first in _READ_STARTS:
        return
    if first and first not in _WRITE_WORDS and first not in _OTHER_COMMANDS:
        raise ConfigError(  # a typo, most likely: nothing is sent to the database
            f"rejected the query: {first!r} does not start a read; {_READS}",
            field="query",
            value=_clip(sql),
        )
    raise _refused_write(sql)


def _skip_opens(tokens: list[_Token], i: int) -> int:
    while i < len(tokens) and tokens[i] == _OPEN:
        i += 1
    return i


def _refused_write(sql: str) -> ConfigError:
    return ConfigError(
        f"the store is read-only here; write statements are refused; {_READS}",
        field="query",
        value=_clip(sql),
    )


def _next_word(tokens: list[_Token], i: int) -> str:
    return tokens[i + 1].text if i + 1 < len(tokens) and tokens[i + 1].kind == "word" else ""


def _clip(text: str, limit: int = 200) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


_DOLLAR_TAG = re.compile(r"\$([A-Za-z_\x80-\uffff][A-Za-z0-9_\x80-\uffff]*)?\$")
_NUMBER = re.compile(r"(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?")


def _tokens(sql: str, dialect: str) -> list[_Token]:
    """The SQL's tokens, as the server's lexer would split them (comments dropped)."""
    pg = dialect == "postgresql"
    out: list[_Token] = []
    i, n = 0, len(sql)
    while i < n:
        c = sql[i]
        if c.isspace():
            i += 1
        elif sql.startswith("--", i):
            end = sql.find("\n", i)
            i = n if end < 0 else end + 1
        elif sql.startswith("/*", i):
            i = _skip_comment(sql, i, nested=pg)
        elif c == "'":
            i = _skip_quoted(sql, i + 1, "'", backslash=False)
            out.append(_Token("string", ""))
        elif pg and c in "eE" and sql.startswith("'", i + 1):
            i = _skip_quoted(sql, i + 2, "'", backslash=True)
            out.append(_Token("string", ""))
        elif pg and c in "uU" and sql.startswith('&"', i + 1):
            raise ConfigError(
                'U&"..." identifiers are not allowed here', field="query", value=_clip(sql)
            )
        elif pg and c == "$" and (tag := _DOLLAR_TAG.match(sql, i)):
            end = sql.find(tag.group(0), tag.end())
            if end < 0:
                raise _unterminated(sql)
            i = end + len(tag.group(0))
            out.append(_Token("string", ""))
        elif c == '"' or (not pg and c == "`"):
            end = _skip_quoted(sql, i + 1, c, backslash=False)
            out.append(_Token("ident", sql[i + 1 : end - 1].replace(c * 2, c)))
            i = end
        elif not pg and c == "[":
            end = sql.find("]", i)
            if end < 0:
                raise _unterminated(sql)
            out.append(_Token("ident", sql[i + 1 : end]))
            i = end + 1
        elif c.isalpha() or c == "_" or ord(c) > 127:
            start = i
            while i < n and (sql[i].isalnum() or sql[i] in "_$" or ord(sql[i]) > 127):
                i += 1
            out.append(_Token("word", sql[start:i].lower()))
        elif number := _NUMBER.match(sql, i):
            out.append(_Token("number", number.group(0)))
            i = number.end()
        else:
            out.append(_Token("punct", c))
            i += 1
    return out


def _skip_comment(sql: str, i: int, nested: bool) -> int:
    depth, i = 0, i
    while i < len(sql):
        if sql.startswith("/*", i) and (nested or depth == 0):
            depth, i = depth + 1, i + 2
        elif sql.startswith("*/", i):
            depth, i = depth - 1, i + 2
            if depth == 0:
                return i
        else:
            i += 1
    raise _unterminated(sql)


def _skip_quoted(sql: str, i: int, quote_char: str, backslash: bool) -> int:
    """The index just past the closing quote; a doubled quote (or \\' where allowed) is
    part of the text."""
    while i < len(sql):
        c = sql[i]
        if backslash and c == "\\":
            i += 2
        elif c == quote_char:
            if sql.startswith(quote_char, i + 1):
                i += 2
            else:
                return i + 1
        else:
            i += 1
    raise _unterminated(sql)


def _unterminated(sql: str) -> ConfigError:
    return ConfigError(
        "a string, quoted name or comment is not closed", field="query", value=_clip(sql)
    )
