"""Alembic environment for edgeline: one migration history for SQLite and PostgreSQL.

The URL is never hard-coded. In order of precedence it comes from:
1. `config.attributes["connection"]` - an open connection handed over by pipeline.db.migrate;
2. `config.attributes["url"]` or the `sqlalchemy.url` main option;
3. edgeline's settings (`EDGELINE_DATABASE_URL`, the TOML file, or the default SQLite file).
`render_as_batch` lets ALTERs run on SQLite (copy-and-move) with the same scripts.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy.engine import Connection

from pipeline.db.engine import create_engine_for
from pipeline.db.tables import Base

config = context.config
target_metadata = Base.metadata


def _url() -> str:
    url = config.attributes.get("url") or config.get_main_option("sqlalchemy.url")
    if url:
        return str(url)
    from pipeline.config import load_settings

    return load_settings().resolved_database_url()


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=True,
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_offline() -> None:
    context.configure(url=_url(), target_metadata=target_metadata, literal_binds=True, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    engine = create_engine_for(_url())
    try:
        with engine.connect() as conn:
            _run(conn)
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
