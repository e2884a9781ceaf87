"""The lexical check of `spx query` reads SQL as each server's lexer does (pure unit tests)."""

from __future__ import annotations

import doctest

import pytest

import spx.platform.readsql as readsql
from spx.errors import ConfigError
from spx.platform.readsql import check_read_sql

PG, LITE = "postgresql", "sqlite"


@pytest.mark.parametrize(
    ("sql", "dialect"),
    [
        ("select 1", PG),
        ("/* a /* nested */ comment */ SELECT 1", PG),
        ("-- a line\nSELECT 1 -- and a trailing one", LITE),
        ("SELECT 'it''s; DELETE' AS a;", LITE),
        ("SELECT E'\\'; DELETE FROM t; --' AS a", PG),  # one E-string, backslash-escaped
        ("SELECT $q$ ; COPY x $q$ AS a", PG),
        ("SELECT $$ pg_read_file $$", PG),
        ('SELECT "update" FROM "copy"', LITE),  # quoted names are not keywords ...
        ("SELECT [delete] FROM t", LITE),
        ("EXPLAIN (ANALYZE, FORMAT JSON) SELECT 1", PG),
        ("EXPLAIN QUERY PLAN WITH x AS (SELECT 1) SELECT * FROM x", LITE),
        ("((SELECT 1))", PG),
        ("TABLE trial_summary", PG),
        ("VALUES (1, 'a')", LITE),
        ("SELECT replace(name, 'a', 'b'), a$b FROM sweeps", PG),
    ],
)
def test_reads_pass(sql, dialect):
    check_read_sql(sql, dialect)


@pytest.mark.parametrize(
    ("sql", "dialect", "message"),
    [
        ("SELECT 1; SELECT 2", PG, "exactly one statement"),
        ("SELECT 1;;DELETE FROM t", LITE, "exactly one statement"),
        ("SELECT /* ; */ 1; /* x */ DELETE FROM t", PG, "exactly one statement"),
        # SQLite comments do not nest: what follows the first */ is code.
        ("SELECT 1 /* /* */ ; DELETE FROM t */", LITE, "exactly one statement"),
        # A standard string ends at the second quote, so the ; is code on PostgreSQL.
        ("SELECT '\\'; DELETE FROM t; --'", PG, "exactly one statement"),
        # 1E' is the number 1 then an E-string, as PostgreSQL lexes it.
        ("SELECT 1E'\\' ' , pg_read_file('/etc/passwd') --'", PG, "'pg_read_file'"),
        ("SELECT \"pg_ls_dir\"('.')", PG, "'pg_ls_dir'"),
        ("SELECT pg_catalog.pg_advisory_xact_lock(1)", PG, "'pg_advisory_xact_lock'"),
        ("SELECT ts_stat('SELECT set_config(''role'', ''postgres'', true)')", PG, "'ts_stat'"),
        ("SELECT U&\"\\0070g_read_file\"('x')", PG, "U&"),
        ("EXPLAIN ANALYZE DELETE FROM t", PG, "write statements are refused"),
        ("EXPLAIN (ANALYZE) INSERT INTO t VALUES (1)", PG, "write statements are refused"),
        ("WITH x AS (SELECT 1) INSERT INTO t SELECT * FROM x", LITE, "write statements"),
        ("WITH x AS (SELECT 1) REPLACE INTO t SELECT * FROM x", LITE, "write statements"),
        ("SELECT * FROM t FOR SHARE", PG, "write statements are refused"),
        ("SET ROLE postgres", PG, "write statements are refused"),
        ("BEGIN", LITE, "write statements are refused"),
        ("SELECT 'unclosed", LITE, "not closed"),
        ("SELECT $x$ unclosed $y$", PG, "not closed"),
        ("/* only a comment */", PG, "empty"),
        ("SELEC 1", PG, "rejected the query: 'selec' does not start a read"),
    ],
)
def test_everything_else_is_refused_naming_query(sql, dialect, message):
    with pytest.raises(ConfigError, match="^query: ") as refused:
        check_read_sql(sql, dialect)
    assert message in str(refused.value)


def test_the_echoed_query_is_cut_to_200_characters():
    with pytest.raises(ConfigError) as refused:
        check_read_sql("DELETE FROM t WHERE a = '" + "x" * 10_000 + "'", LITE)
    assert len(str(refused.value)) < 400


def test_docstring_examples():
    assert doctest.testmod(readsql, optionflags=doctest.ELLIPSIS).failed == 0
