"""Errors of the persistence adapter that callers outside pipeline.db may catch (no SQLAlchemy import).

Not responsible for: mapping every driver error; only the ones an operator can act on get a type here.
"""

from __future__ import annotations


class DatabaseUnavailable(RuntimeError):
    """The database cannot be reached or opened; the message names the (masked) URL and the setting."""

    def __init__(self, masked_url: str, cause: str) -> None:
        super().__init__(
            f"database {masked_url} is unavailable ({cause}); check that it is running and reachable, "
            "or fix the setting database_url (EDGELINE_DATABASE_URL)"
        )
        self.masked_url = masked_url


class AuditTampered(RuntimeError):
    """The audit head row is missing: the schema was not migrated or the table was tampered with."""


class SchemaMissing(RuntimeError):
    """A table is missing: the database was never migrated (or is older than this edgeline)."""

    def __init__(self, masked_url: str, cause: str) -> None:
        super().__init__(f"database {masked_url} has no edgeline schema ({cause}): run `edgeline db upgrade`")
        self.masked_url = masked_url


class DatabaseUrlInvalid(ValueError):
    """The database URL cannot be parsed or names a database edgeline has no driver for."""

    def __init__(self, cause: str) -> None:
        # The URL itself is not repeated: it may hold a password.
        super().__init__(
            f"database_url (EDGELINE_DATABASE_URL) is not a usable database URL ({cause}); e.g. "
            "postgresql://user@host:5432/edgeline or sqlite:///path/to/edgeline.db"
        )
