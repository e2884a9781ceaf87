"""Alembic environment of the spx results store.

``Store.open`` runs ``upgrade head`` in code and hands over an open connection through
``config.attributes["connection"]`` (it takes the migration lock first). Without one, a
connection is made from the ``sqlalchemy.url`` option. The version table is
``spx_alembic_version`` so the store can share a database with Optuna and MLflow, which
use Alembic too.
"""

from __future__ import annotations

from alembic import context
from alembic.util import CommandError
from sqlalchemy import create_engine

from spx.platform.store_models import Base

VERSION_TABLE = "spx_alembic_version"


def _migrate(connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        version_table=VERSION_TABLE,
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()


def run() -> None:
    if context.is_offline_mode():
        context.configure(
            url=context.config.get_main_option("sqlalchemy.url"),
            target_metadata=Base.metadata,
            version_table=VERSION_TABLE,
            literal_binds=True,
        )
        with context.begin_transaction():
            context.run_migrations()
        return
    connection = context.config.attributes.get("connection")
    if connection is not None:
        _migrate(connection)
        return
    url = context.config.get_main_option("sqlalchemy.url")
    if not url:
        raise CommandError("set sqlalchemy.url, or pass a connection in config.attributes")
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            _migrate(conn)
    finally:
        engine.dispose()


run()
