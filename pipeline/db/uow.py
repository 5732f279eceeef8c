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
from pipeline.db.repositories import (
    SqlGroupRepository,
    SqlKeyRepository,
    SqlOutbox,
    SqlProcessedMessages,
    SqlStationRepository,
    SqlUnitRepository,
)
from pipeline.service.unit_of_work import UnitOfWork


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

    def commit(self) -> None:
        self.audit.flush_pending()
        self.session.commit()

    def rollback(self) -> None:
        self.audit.discard_pending()
        self.session.rollback()
