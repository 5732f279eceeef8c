"""Who is asking, and may they: bearer tokens and the dashboard's session cookie, mapped to roles.

A request carries its token as `Authorization: Bearer <token>` (API clients) or in the HttpOnly,
SameSite=Strict session cookie the dashboard sets after a `?token=` link is opened once. There is no
anonymous access: no token is 401, a valid token with too small a role is 403.

Responsible for: resolving the token to a role and enforcing the role order viewer < auditor < admin.
Not responsible for: storing tokens (pipeline.db.api_tokens).
"""

from __future__ import annotations

from collections.abc import Callable

from fastapi import HTTPException, Request

from pipeline.db.api_tokens import ROLES, TokenInfo, lookup_token
from pipeline.db.session import Database

SESSION_COOKIE = "edgeline_session"
RANK = {role: rank for rank, role in enumerate(ROLES)}


class NotAuthenticated(HTTPException):
    """No usable token: 401, with the hint an operator needs."""

    def __init__(self, detail: str) -> None:
        super().__init__(401, detail, headers={"WWW-Authenticate": 'Bearer realm="edgeline"'})


def request_token(request: Request) -> str | None:
    """The token of a request: the bearer header first, else the session cookie."""
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return request.cookies.get(SESSION_COOKIE) or None


def principal(request: Request) -> TokenInfo:
    """The token's owner, or 401."""
    token = request_token(request)
    if token is None:
        raise NotAuthenticated(
            "no token: send `Authorization: Bearer <token>` (create one with `edgeline web token create`)"
        )
    db: Database = request.app.state.db
    info = lookup_token(db, token)
    if info is None:
        raise NotAuthenticated("token unknown or revoked: create a new one with `edgeline web token create`")
    return info


def require(role: str) -> Callable[[Request], TokenInfo]:
    """A FastAPI dependency admitting tokens whose role is at least `role`."""

    def dependency(request: Request) -> TokenInfo:
        info = principal(request)
        if RANK.get(info.role, -1) < RANK[role]:
            raise HTTPException(403, f"role {info.role!r} may not do this: it needs {role!r} or higher")
        return info

    return dependency
