"""Engine construction for PostgreSQL (psycopg 3) and SQLite (WAL), with the same code paths above it.

Responsible for: URL normalisation, connection pragmas, SQLite transaction mode, and turning
"cannot connect" into `DatabaseUnavailable` naming the masked URL and the setting to fix.
Not responsible for: schema (pipeline.db.migrate), sessions (pipeline.db.session).

SQLite: pysqlite's own transaction handling is switched off and every transaction starts with
`BEGIN IMMEDIATE`, so concurrent writers queue on the busy timeout instead of failing when a read lock
would be upgraded to a write lock (SQLAlchemy docs, "Serializable isolation / Savepoints / Transactional
DDL" for pysqlite). The price: read-only transactions also take the write lock briefly.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import URL, ExceptionContext, make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError

from pipeline.db.errors import DatabaseUnavailable, DatabaseUrlInvalid, SchemaMissing

SQLITE_BUSY_TIMEOUT_SECONDS = 30.0


def normalise_url(url: str) -> URL:
    """Parse a database URL, choosing psycopg 3 for plain `postgresql://` URLs."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise DatabaseUrlInvalid("not of the form dialect://user@host/database") from None
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed


def mask_url(url: str | URL) -> str:
    """The URL with its password replaced by `***`, safe for logs and error messages."""
    try:
        parsed = url if isinstance(url, URL) else make_url(url)
    except ArgumentError:
        raise DatabaseUrlInvalid("not of the form dialect://user@host/database") from None
    return parsed.render_as_string(hide_password=True)


def create_engine_for(url: str, **kwargs: Any) -> Engine:
    """Create an engine for `url` (PostgreSQL or SQLite) with edgeline's connection settings."""
    parsed = normalise_url(url)
    try:
        if parsed.get_backend_name() == "sqlite":
            engine = _sqlite_engine(parsed, **kwargs)
        else:
            engine = create_engine(parsed, pool_pre_ping=True, **kwargs)
    except NoSuchModuleError:
        raise DatabaseUrlInvalid(f"no database driver for {parsed.drivername!r}") from None
    _translate_connect_errors(engine, mask_url(parsed))
    return engine


def _sqlite_engine(url: URL, **kwargs: Any) -> Engine:
    if url.database and url.database != ":memory:" and not url.database.startswith("file:"):
        Path(url.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_SECONDS}, **kwargs)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # we issue BEGIN ourselves
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute(f"PRAGMA busy_timeout={int(SQLITE_BUSY_TIMEOUT_SECONDS * 1000)}")
            cursor.execute("PRAGMA synchronous=NORMAL")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


def _translate_connect_errors(engine: Engine, masked: str) -> None:
    @event.listens_for(engine, "handle_error")
    def _on_error(context: ExceptionContext) -> None:
        # A failure before any connection exists is "cannot reach/open the database".
        original = context.original_exception
        cause = (
            str(original).strip().splitlines()[0][:200] if str(original).strip() else type(original).__name__
        )
        if context.connection is None:
            raise DatabaseUnavailable(masked, cause) from original
        # PostgreSQL undefined_table, or SQLite's message for the same.
        if getattr(original, "sqlstate", None) == "42P01" or cause.startswith("no such table"):
            raise SchemaMissing(masked, cause) from original
