"""Store fixtures: every store test runs against SQLite and, when one answers, PostgreSQL.

PostgreSQL comes from ``SPX_TEST_POSTGRES_URL`` (e.g.
``postgresql+psycopg://postgres@127.0.0.1:5432/test``). Each test gets a fresh schema,
selected through libpq's ``options=-csearch_path=<schema>``, so its tables and Alembic's
version table land there; the schema is dropped afterwards.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from spx.platform.settings import mask_url
from spx.platform.store import Store

PG_ENV = "SPX_TEST_POSTGRES_URL"


@pytest.fixture(scope="session")
def postgres_base_url() -> str:
    """The admin URL of the test PostgreSQL server; skips when there is none."""
    url = os.environ.get(PG_ENV)
    if not url:
        pytest.skip(f"{PG_ENV} is not set (point it at a PostgreSQL server to run these)")
    engine = sa.create_engine(url, connect_args={"connect_timeout": 2})
    try:
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
    except sa.exc.OperationalError as exc:
        first = str(exc).splitlines()[0]
        pytest.skip(f"PostgreSQL at {mask_url(url)} did not answer within 2 s: {first}")
    finally:
        engine.dispose()
    return url


@pytest.fixture
def postgres_url(postgres_base_url: str) -> Iterator[str]:
    """A URL whose search_path is a fresh, empty schema, dropped after the test."""
    schema = f"spx_test_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(postgres_base_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    url = sa.make_url(postgres_base_url).update_query_dict({"options": f"-csearch_path={schema}"})
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store_url(request: pytest.FixtureRequest, tmp_path) -> str:
    """A URL of an empty store on each backend."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store' / 'spx.db'}"
    return request.getfixturevalue("postgres_url")


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    """An open, migrated, empty store, closed after the test."""
    opened = Store.open(store_url)
    try:
        yield opened
    finally:
        opened.close()
