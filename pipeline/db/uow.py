"""`SqlUnitOfWork`: one SQLAlchemy session = one database transaction over every repository.

Responsible for: opening a session on `__enter__`, wiring the SQL repositories to it, committing on
`commit()`, and rolling back and closing on exit (anything not committed is discarded).
Not responsible for: engine set-up (pipeline.db.session / engine) or business logic (handlers).
"""

from __future__ import annotations

from typing import Any, Self

from sqlalchemy import event
from sqlalchemy.orm import ORMExecuteState, Session, sessionmaker

from pipeline.db.audit_chain import SqlAuditLog
from pipeline.db.repositories import (
    SqlGroupRepository,
    SqlKeyRepository,
    SqlOutbox,
    SqlProcessedMessages,
    SqlStationRepository,
    SqlUnitRepository,
)
from pipeline.service.unit_of_work import BatchAborted, UnitOfWork


class SqlUnitOfWork(UnitOfWork):
    """A unit of work on a SQL database. Use as `with uow: ...; uow.commit()`; not re-entrant."""

    audit: SqlAuditLog

    def __init__(self, session_factory: sessionmaker[Session]) -> None:
        self._session_factory = session_factory
        self._session: Session | None = None
        self._writes = 0  # statements that changed rows, counted once member() is used
        self._counting = False

    @property
    def session(self) -> Session:
        """The open session (only inside `with`); for adapters in pipeline.db only."""
        if self._session is None:
            raise RuntimeError("SqlUnitOfWork used outside `with uow:`")
        return self._session

    def __enter__(self) -> Self:
        if self._session is not None:
            raise RuntimeError("SqlUnitOfWork is already in use; create one per transaction")
        session = self._session_factory()
        self._session = session
        self.units = SqlUnitRepository(session)
        self.keys = SqlKeyRepository(session)
        self.groups = SqlGroupRepository(session)
        self.stations = SqlStationRepository(session)
        self.outbox = SqlOutbox(session)
        self.processed = SqlProcessedMessages(session)
        self.audit = SqlAuditLog(session)
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self.rollback()
        finally:
            self.session.close()
            self._session = None
            self._counting = False

    def member(self) -> UnitOfWork:
        """A unit of work sharing this transaction; its commit joins it, this one commits them all."""
        if not self._counting:
            event.listen(self.session, "after_flush", self._count_flush)
            event.listen(self.session, "do_orm_execute", self._count_statement)
            self._counting = True
        return _MemberUnitOfWork(self)

    @property
    def writes(self) -> int:
        """How many flushes / DML statements this transaction ran since member() was first called."""
        return self._writes

    def _count_flush(self, session: Session, flush_context: Any) -> None:
        self._writes += 1

    def _count_statement(self, state: ORMExecuteState) -> None:
        if state.is_insert or state.is_update or state.is_delete:
            self._writes += 1

    def commit(self) -> None:
        self.audit.flush_pending()
        self.session.commit()

    def rollback(self) -> None:
        self.audit.discard_pending()
        self.session.rollback()


class _MemberUnitOfWork(UnitOfWork):
    """One handler's share of a batch: repositories of the outer session, audit records of its own."""

    def __init__(self, outer: SqlUnitOfWork) -> None:
        self._outer = outer
        self._mark = 0

    def __enter__(self) -> Self:
        outer = self._outer
        self.units, self.keys, self.groups = outer.units, outer.keys, outer.groups
        self.stations, self.outbox, self.processed = outer.stations, outer.outbox, outer.processed
        self.audit = SqlAuditLog(outer.session)
        self._mark = outer.writes
        return self

    def __exit__(self, *exc: object) -> None:
        self.rollback()

    def commit(self) -> None:
        assert isinstance(self.audit, SqlAuditLog)
        self._outer.audit.adopt(self.audit)
        self._mark = self._outer.writes

    def rollback(self) -> None:
        assert isinstance(self.audit, SqlAuditLog)
        self.audit.discard_pending()
        if self._outer.writes != self._mark:
            raise BatchAborted("a handler left its unit of work without committing what it wrote")
