"""The web app (FastAPI): audit API, dashboard and /metrics in one ASGI application.

Responsible for: wiring routers, error pages (one-line JSON for the API, a small HTML page for the
dashboard), turning a `?token=` link into the session cookie, and /metrics.
Not responsible for: serving HTTP (uvicorn, pipeline.web.server) or any query.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from pipeline.crypto.site_signing import SiteSigner
from pipeline.db import audit_api_queries
from pipeline.db.api_tokens import lookup_token
from pipeline.db.session import Database
from pipeline.metrics.prometheus import DbGauges, PrometheusMetrics
from pipeline.web import api, dashboard
from pipeline.web.auth import SESSION_COOKIE

SESSION_MAX_AGE = 12 * 3600  # one shift and a half


def create_app(db: Database, *, stuck_seconds: float, signer: SiteSigner | None = None) -> FastAPI:
    """The app over `db`; `signer` signs record exports (absent: those answer 409)."""
    app = FastAPI(
        title="edgeline audit API",
        version="1",
        description="Read-only audit API of an edgeline line. Authenticate with `Authorization: Bearer`.",
        openapi_url="/api/v1/openapi.json",
        docs_url=None,  # Swagger UI loads from a CDN: station PCs are often offline; the JSON is enough
        redoc_url=None,
    )
    app.state.db, app.state.stuck_seconds, app.state.signer = db, stuck_seconds, signer
    metrics = PrometheusMetrics(lambda: db_gauges(db))
    app.include_router(api.router)
    app.include_router(dashboard.router)
    app.add_exception_handler(RequestValidationError, _validation_error)  # type: ignore[arg-type]
    app.add_exception_handler(StarletteHTTPException, _http_error)  # type: ignore[arg-type]
    app.middleware("http")(_token_link)

    @app.get("/metrics", include_in_schema=False)
    def metrics_endpoint() -> Response:
        body, content_type = metrics.exposition()
        return Response(body, media_type=content_type)

    return app


def db_gauges(db: Database) -> DbGauges:
    """Units per state and the outbox backlog, read at scrape time."""
    pending, oldest = audit_api_queries.outbox_backlog(db)
    lag = (datetime.now(UTC) - oldest).total_seconds() if oldest else 0.0
    return DbGauges(audit_api_queries.units_by_state(db), pending, max(0.0, lag))


def _wants_html(request: Request) -> bool:
    return not request.url.path.startswith(("/api/", "/metrics"))


async def _validation_error(request: Request, exc: RequestValidationError) -> Response:
    """422 with one line naming the first bad parameter, and the full list for programs."""
    errors = exc.errors()
    first = errors[0] if errors else {}
    location = [str(p) for p in first.get("loc", ())]
    where = f"{location[0]} parameter {location[-1]!r}" if len(location) >= 2 else "request"
    detail = f"{where}: {first.get('msg', 'invalid')}"
    if _wants_html(request):
        return _error_page(request, 422, detail)
    fields = [{"loc": list(e.get("loc", ())), "msg": e.get("msg")} for e in errors]
    return JSONResponse({"detail": detail, "errors": fields}, status_code=422)


async def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
    headers = getattr(exc, "headers", None)
    if _wants_html(request):
        return _error_page(request, exc.status_code, str(exc.detail), headers)
    return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=headers)


def _error_page(request: Request, status: int, message: str, headers: Any = None) -> Response:
    if status == 401:
        message += " — open the dashboard link with ?token=… printed by `edgeline web token create`."
    context = {"status": status, "message": message}
    response = dashboard.TEMPLATES.TemplateResponse(request, "error.html", context, status_code=status)
    if status == 401:
        response.headers["WWW-Authenticate"] = 'Bearer realm="edgeline"'
    return response


async def _token_link(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
    """A page opened with `?token=`: keep the token in the session cookie and redirect to the bare URL."""
    token = request.query_params.get("token")
    if token is None or request.method != "GET" or not _wants_html(request):
        return await call_next(request)
    rest = [(k, v) for k, v in request.query_params.multi_items() if k != "token"]
    target = request.url.path + ("?" + urlencode(rest) if rest else "")
    response = RedirectResponse(target, 303)
    if lookup_token(request.app.state.db, token) is not None:
        response.set_cookie(
            SESSION_COOKIE,
            token,
            max_age=SESSION_MAX_AGE,
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
        )
    return response
