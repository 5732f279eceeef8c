"""API tokens of the audit API and dashboard: created with a role, stored only as a SHA-256 hash.

A token is 32 random bytes (URL-safe base64, prefixed `elt_` so it is recognisable in a leak scan); being
random and long, a plain SHA-256 is enough to store it (no password stretching needed).

Responsible for: creating, looking up and revoking tokens.
Not responsible for: what each role may do (pipeline.web.auth).
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import select

from pipeline.db.session import Database
from pipeline.db.tables import ApiTokenRow

ROLES = ("viewer", "auditor", "admin")
TOKEN_PREFIX = "elt_"


@dataclass(frozen=True, slots=True)
class TokenInfo:
    """Who a token belongs to (never the token itself)."""

    id: int
    name: str
    role: str


def token_hash(token: str) -> str:
    """The stored form of a token."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def create_token(db: Database, *, name: str, role: str) -> tuple[TokenInfo, str]:
    """Store a new token with `role`; return its info and the clear token (shown once, never stored)."""
    if role not in ROLES:
        raise ValueError(f"role {role!r} is unknown: use one of {', '.join(ROLES)}")
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    row = ApiTokenRow(name=name, role=role, token_hash=token_hash(token), created_at=datetime.now(UTC))
    with db.session() as session, session.begin():
        session.add(row)
        session.flush()
        info = TokenInfo(row.id, row.name, row.role)
    return info, token


def lookup_token(db: Database, token: str) -> TokenInfo | None:
    """The live (not revoked) token matching `token`, if any."""
    query = select(ApiTokenRow).where(
        ApiTokenRow.token_hash == token_hash(token), ApiTokenRow.revoked_at.is_(None)
    )
    with db.session() as session:
        row = session.scalars(query).first()
        return TokenInfo(row.id, row.name, row.role) if row else None


def revoke_token(db: Database, token_id: int) -> bool:
    """Revoke the token with `token_id`; False if there is no such live token."""
    with db.session() as session, session.begin():
        row = session.get(ApiTokenRow, token_id)
        if row is None or row.revoked_at is not None:
            return False
        row.revoked_at = datetime.now(UTC)
        return True


def list_tokens(db: Database) -> list[tuple[TokenInfo, datetime, datetime | None]]:
    """Every token's info with its creation and revocation times."""
    with db.session() as session:
        rows = session.scalars(select(ApiTokenRow).order_by(ApiTokenRow.id))
        return [(TokenInfo(r.id, r.name, r.role), r.created_at, r.revoked_at) for r in rows]
