"""Which database errors are worth waiting out (server down, connection lost, lock timeout).

The consumer keeps a message unacknowledged and retries while this says yes, so a database outage
delays the line instead of dead-lettering scans. Everything else is a bug or bad data.
"""

from __future__ import annotations

from sqlalchemy import exc as sa_exc

from pipeline.db.errors import DatabaseUnavailable


def is_transient_db_error(error: BaseException) -> bool:
    """Whether `error` means "the database is unreachable or busy right now"."""
    if isinstance(error, DatabaseUnavailable):
        return True
    if isinstance(error, sa_exc.DBAPIError) and error.connection_invalidated:
        return True
    if isinstance(error, (sa_exc.OperationalError, sa_exc.InterfaceError, sa_exc.TimeoutError)):
        return True
    return isinstance(error, sa_exc.DisconnectionError)


def is_write_conflict(error: BaseException) -> bool:
    """Whether `error` is a unique/foreign-key violation: another transaction wrote the same row first.

    Worth a few immediate retries (the handler then finds the row), not an endless wait: a conflict that
    persists is a bug or bad data and goes to the dead-letter topic.
    """
    return isinstance(error, sa_exc.IntegrityError)
