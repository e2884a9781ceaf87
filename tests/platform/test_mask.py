"""Passwords never reach what spx prints: ``mask_url`` on every form a URL or DSN carries
one in, the known passwords of spx's own URLs anywhere, and the command-line split that
moves ``--store`` & co. into the environment."""

from __future__ import annotations

import doctest
import logging
import threading

import pytest

import spx.platform.settings
import spx.secrets
from spx.platform.settings import encode_userinfo, has_secret, mask_url, resolve
from spx.secrets import mask_output, split_secrets

MASKED = [
    # userinfo
    ("postgresql+psycopg://bob:S3cr3t@db:5432/x", "postgresql+psycopg://bob:***@db:5432/x"),
    ("postgres://bob:S3cr3t@db/x", "postgres://bob:***@db/x"),  # a typo'd scheme
    ("bogus://bob:S3cr3t@db", "bogus://bob:***@db"),
    ("postgresql://:S3cr3t@db/x", "postgresql://:***@db/x"),  # empty user name
    ("postgresql://bob:S3@cr@3t@db/x", "postgresql://bob:***@db/x"),  # raw @: up to the last
    ("postgresql://bob:S3 cr 3t@db/x failed", "postgresql://bob:***@db/x failed"),  # spaces
    ("postgresql://bob:a/b?c@db/x?e=u@v", "postgresql://bob:***@db/x?e=u@v"),  # / ? and a query @
    ("mlflow at http://u:S3cr3t@h:5000/api: 503", "mlflow at http://u:***@h:5000/api: 503"),
    ("got 'postgres://u:S3cr3t@h/x', try again", "got 'postgres://u:***@h/x', try again"),
    ("a://u:S3cr3t@h/x and b://v:Pw2@k/y", "a://u:***@h/x and b://v:***@k/y"),
    # query parameters and libpq keyword/value DSNs
    ("postgresql://db/x?password=S3cr3t", "postgresql://db/x?password=***"),
    ("postgresql://db/x?user=bob&password=S3cr3t&sslmode=off", "postgresql://db/x?user=bob&password=***&sslmode=off"),
    ("postgresql://db/x?PWD=S3cr3t", "postgresql://db/x?PWD=***"),
    ("postgresql://db/x?pass=S3cr3t&a=1", "postgresql://db/x?pass=***&a=1"),
    ("host=db password=S3cr3t dbname=x", "host=db password=*** dbname=x"),
    ("host=db password = 'S3 cr3t' dbname=x", "host=db password = *** dbname=x"),
    ("x?options=-c%20password%3DS3cr3t%20-cy", "x?options=-c%20password%3D***%20-cy"),
    # nothing to hide
    ("postgresql://bob@db:5432/x", "postgresql://bob@db:5432/x"),
    ("http://127.0.0.1:5000", "http://127.0.0.1:5000"),
    ("http://h:5000/x?a=1, ask bob@example.org", "http://h:5000/x?a=1, ask bob@example.org"),
    ("postgresql://[::1]:5432/x", "postgresql://[::1]:5432/x"),
    ("sqlite:////home/me/spx.db", "sqlite:////home/me/spx.db"),
    ("bypass=1 passphrase=2 data/tokens=3", "bypass=1 passphrase=2 data/tokens=3"),
]  # fmt: skip


@pytest.mark.parametrize(("text", "masked"), MASKED)
def test_mask_url_hides_every_form_of_password(text, masked, monkeypatch):
    for name in spx.platform.settings.URL_ENV:
        monkeypatch.delenv(name, raising=False)
    assert mask_url(text) == masked


def test_the_passwords_of_spx_urls_are_masked_wherever_they_appear(monkeypatch):
    monkeypatch.setenv("SPX_STORE_URL", "postgresql://bob:Pa%40ss%20w@db/x")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "postgresql://db/x?password=Tr4ck")
    # a driver's error quoting them without any URL around: raw, decoded, re-encoded
    text = 'auth failed for "Pa@ss w", Pa%40ss%20w, Pa%40ss+w; Tr4ck'
    assert mask_url(text) == 'auth failed for "***", ***, ***; ***'


def test_has_secret_and_encode_userinfo():
    assert [has_secret(u) for u in ("pg://u:pw@h/x", "pg://h/x?password=p", "pg://:p@h")] == [
        True,
        True,
        True,
    ]
    assert [has_secret(u) for u in ("pg://u@h/x", "h:6379", "ray://h:10001", "sqlite:///a")] == [
        False,
        False,
        False,
        False,
    ]
    assert encode_userinfo("pg://u:p@ss@h/x") == "pg://u:p%40ss@h/x"
    assert encode_userinfo("pg://u:pw@h/x?e=a@b") == "pg://u:pw@h/x?e=a@b"


def test_resolve_reads_a_raw_at_in_the_password_as_browsers_do(monkeypatch, tmp_path):
    import sqlalchemy as sa

    monkeypatch.setenv("SPX_HOME", str(tmp_path))
    url = sa.make_url(resolve(store="postgresql://bob:p@ss@db:5432/x").store_url)
    assert (url.password, url.host, url.database) == ("p@ss", "db", "x")


SPLIT = [
    (["sweep", "launch", "f.yaml", "--store", "pg://u:pw@h/x"], ["sweep", "launch", "f.yaml"],
     {"SPX_STORE_URL": "pg://u:pw@h/x"}),
    (["ui", "--tracking-uri=pg://:pw@h/x", "--port", "1"], ["ui", "--port", "1"],
     {"MLFLOW_TRACKING_URI": "pg://:pw@h/x"}),
    (["x", "--address", "ray://u:pw@h:1", "--store", "sqlite:///a"], ["x", "--store", "sqlite:///a"],
     {"RAY_ADDRESS": "ray://u:pw@h:1"}),
    (["x", "--store", "pg://h/x?password=p"], ["x"], {"SPX_STORE_URL": "pg://h/x?password=p"}),
    (["x", "--store", "pg://u@h/x"], ["x", "--store", "pg://u@h/x"], {}),  # no secret: stays
    (["x", "--", "--store", "pg://u:pw@h/x"], ["x", "--", "--store", "pg://u:pw@h/x"], {}),
    (["x", "--store"], ["x", "--store"], {}),  # a missing value: click says so
]  # fmt: skip


@pytest.mark.parametrize(("args", "kept", "moved"), SPLIT)
def test_split_secrets_moves_url_flags_with_a_password(args, kept, moved):
    assert split_secrets(args, {"--store", "--tracking-uri", "--address"}) == (kept, moved)


def test_a_flag_the_command_does_not_take_stays_for_click_to_refuse():
    args = ["sweep", "list", "--tracking-uri", "pg://u:pw@h/x"]
    assert split_secrets(args, {"--store"}) == (args, {})


def test_log_records_and_dying_threads_print_no_password(caplog, capsys, monkeypatch):
    monkeypatch.setattr(threading, "excepthook", threading.excepthook)  # restored afterwards
    factory = logging.getLogRecordFactory()
    try:
        mask_output()
        logging.getLogger("spx.test").warning("store %s failed", "pg://u:S3cr3t@h/x")

        def die() -> None:
            raise RuntimeError("cannot reach pg://u:S3cr3t@h/x")

        thread = threading.Thread(target=die, name="bookkeeping")
        thread.start()
        thread.join()
    finally:
        logging.setLogRecordFactory(factory)
    assert "store pg://u:***@h/x failed" in caplog.text and "S3cr3t" not in caplog.text
    err = capsys.readouterr().err
    assert "in thread bookkeeping" in err and "pg://u:***@h/x" in err and "S3cr3t" not in err


@pytest.mark.parametrize("module", [spx.platform.settings, spx.secrets])
def test_docstring_examples(module):
    assert doctest.testmod(module).failed == 0
