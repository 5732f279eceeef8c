"""`Database`: the engine and session factory for one database URL, and units of work on it.

Responsible for: lifetime of the engine (create once per process, `dispose()` at shutdown), a
reachability check that fails with `DatabaseUnavailable`, and saying when the server is not maintained
(PostgreSQL autovacuum off) for `edgeline doctor`.
Not responsible for: the schema (run `edgeline db upgrade` / pipeline.db.migrate first).
"""

from __future__ import annotations

from sqlalchemy import Engine, text
from sqlalchemy.orm import Session, sessionmaker

from pipeline.db.engine import create_engine_for, mask_url
from pipeline.db.uow import SqlUnitOfWork


class Database:
    """One database: `uow()` gives a fresh unit of work; `session()` a raw session for read queries."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine: Engine = create_engine_for(url)
        # expire_on_commit=False: domain objects are mapped out of rows, rows are never used after commit.
        self.session_factory: sessionmaker[Session] = sessionmaker(self.engine, expire_on_commit=False)

    def __repr__(self) -> str:
        return f"Database({mask_url(self.url)!r})"

    def uow(self) -> SqlUnitOfWork:
        """A new unit of work (one transaction)."""
        return SqlUnitOfWork(self.session_factory)

    def session(self) -> Session:
        """A new session, for read-only queries in pipeline.db (e.g. audit)."""
        return self.session_factory()

    def snapshot_session(self) -> Session:
        """A read-only session whose queries all see one snapshot (PostgreSQL: REPEATABLE READ).

        For checks that compare tables with each other while workers keep writing: read committed would
        let a commit land between two queries (the audit head read before a record appended after it).
        SQLite: the engine's own transaction mode applies.
        """
        session = self.session_factory()
        if self.engine.dialect.name == "postgresql":
            session.connection(execution_options={"isolation_level": "REPEATABLE READ"})
        return session

    def ping(self) -> None:
        """Connect once; raises DatabaseUnavailable naming the masked URL if that fails."""
        with self.engine.connect() as conn:
            conn.execute(text("SELECT 1"))

    def maintenance_problem(self) -> str | None:
        """What keeps this database from staying fast as its tables grow, or None.

        PostgreSQL with autovacuum off never refreshes planner statistics nor clears dead rows: batch
        lookups (IN lists) then run as sequential scans and the periodic jobs walk dead index entries,
        so every unit costs more the longer the line runs. SQLite: nothing to check.
        """
        if self.engine.dialect.name != "postgresql":
            return None
        with self.engine.connect() as conn:
            autovacuum = conn.execute(text("SHOW autovacuum")).scalar()
        if autovacuum == "on":
            return None
        return (
            "PostgreSQL autovacuum is off: planner statistics go stale and dead rows pile up, so each "
            "unit costs more as the tables grow; set autovacuum = on (or run VACUUM ANALYZE every few "
            "minutes)"
        )

    def dispose(self) -> None:
        """Close every pooled connection."""
        self.engine.dispose()
