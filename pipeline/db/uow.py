"""`SqlUnitOfWork`: one SQLAlchemy session = one database transaction over every repository.

Responsible for: opening a session on `__enter__`, wiring the SQL repositories to it, committing on
`commit()`, and rolling back and closing on exit (anything not committed is discarded).
Not responsible for: engine set-up (pipeline.db.session / engine) or business logic (handlers).
"""

from __future__ import annotations

from typing import Self

from sqlalchemy.orm import Session, sessionmaker

from pipeline.db.approvals import SqlApprovalRepository
from pipeline.db.audit_chain import SqlAuditLog
from pipeline.db.delivery import SqlOutbox, SqlProcessedMessages
from pipeline.db.line_records import SqlGroupRepository, SqlKeyRepository, SqlStationRepository
from pipeline.db.repositories import SqlUnitRepository, writes
from pipeline.service.unit_of_work import BatchAborted, UnitOfWork


class SqlUnitOfWork(UnitOfWork):
    """A unit of work on a SQL database. Use as `with uow: ...; uow.commit()`; not re-entrant."""

    audit: SqlAuditLog

    def __init__(self, session_factory: sessionmaker[Session]) -> None:
        self._session_factory = session_factory
        self._session: Session | None = None

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
        self.approvals = SqlApprovalRepository(session)
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self.rollback()
        finally:
            self.session.close()
            self._session = None

    def member(self) -> UnitOfWork:
        """A unit of work sharing this transaction; its commit joins it, this one commits them all."""
        return _MemberUnitOfWork(self)

    @property
    def writes(self) -> int:
        """How many repository writes this unit of work made so far."""
        return writes(self.session)

    def commit(self) -> None:
        assert isinstance(self.outbox, SqlOutbox)
        assert isinstance(self.processed, SqlProcessedMessages)
        self.outbox.flush_deferred()
        self.processed.flush_deferred()
        self.audit.flush_pending()
        self.session.commit()
        self._forget()

    def rollback(self) -> None:
        self.audit.discard_pending()
        self.session.rollback()
        self._forget()

    def _forget(self) -> None:
        assert isinstance(self.units, SqlUnitRepository)
        assert isinstance(self.processed, SqlProcessedMessages)
        assert isinstance(self.outbox, SqlOutbox)
        assert isinstance(self.groups, SqlGroupRepository)
        assert isinstance(self.stations, SqlStationRepository)
        self.units.forget()
        self.processed.forget()
        self.outbox.forget()
        self.groups.forget()
        self.stations.forget()


class _MemberUnitOfWork(UnitOfWork):
    """One handler's share of a batch: repositories of the outer session, audit records of its own."""

    def __init__(self, outer: SqlUnitOfWork) -> None:
        self._outer = outer
        self._mark = 0

    def __enter__(self) -> Self:
        outer = self._outer
        self.units, self.keys, self.groups = outer.units, outer.keys, outer.groups
        self.stations, self.outbox, self.processed = outer.stations, outer.outbox, outer.processed
        self.approvals = outer.approvals
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
