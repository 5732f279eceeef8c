"""The dashboard: server-rendered pages (Jinja2) with a little vanilla JS that refreshes the live view.

Pages: `/` the live line view (its body is `/fragments/live`, re-fetched every few seconds), `/units` a
search and listing, `/units/{key}` one unit's timeline. Every number links to the units behind it.

Responsible for: page routes and what each template gets.
Not responsible for: numbers (pipeline.web.live), charts (pipeline.web.charts), auth (pipeline.web.auth).
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates
from jinja2 import StrictUndefined

from pipeline.db import audit, audit_api_queries
from pipeline.db.session import Database
from pipeline.web import live
from pipeline.web.auth import require
from pipeline.web.charts import Bar, column_chart, pareto_chart
from pipeline.web.params import STATES, UnitQuery, decode_cursor, encode_cursor, unit_query

TEMPLATES = Jinja2Templates(directory=str(Path(__file__).parent / "templates"))
TEMPLATES.env.undefined = StrictUndefined  # a misspelt field is an error in the tests, not a blank cell
PAGE_SIZE = 50
STAGES = ("scanned", "keyed", "enrolled", "config_issued", "flashed", "assigned")

router = APIRouter(include_in_schema=False, dependencies=[Depends(require("viewer"))])


def units_href(**filters: Any) -> str:
    """Link to the unit listing with these filters."""
    return "/units?" + urlencode({k: v for k, v in filters.items() if v is not None})


def _db(request: Request) -> Database:
    db: Database = request.app.state.db
    return db


def _live_context(request: Request) -> dict[str, Any]:
    snap = live.snapshot(_db(request), stuck_seconds=request.app.state.stuck_seconds)
    through = [
        Bar(
            t.strftime("%H:%M"),
            n,
            units_href(assigned_since=t.isoformat(), assigned_until=(t + snap.bucket).isoformat()),
            f"{n} assigned from {t:%H:%M} UTC",
        )
        for t, n in snap.throughput
    ]
    pareto = [
        Bar(reason or "(no reason)", n, units_href(state="failed", reason=reason), f"{n} x {reason}")
        for reason, n in snap.pareto
    ]
    return {
        "snap": snap,
        "stages": STAGES,
        "other_states": [s for s in STATES if s not in STAGES],
        "throughput_svg": column_chart(through),
        "pareto_svg": pareto_chart(pareto),
        "yield_ratio": live.yield_ratio,
        "href": units_href,
        "bucket_minutes": int(snap.bucket / timedelta(minutes=1)),
    }


@router.get("/", response_class=HTMLResponse)
def live_page(request: Request) -> HTMLResponse:
    """The live line view."""
    return TEMPLATES.TemplateResponse(request, "live.html", _live_context(request))


@router.get("/fragments/live", response_class=HTMLResponse)
def live_fragment(request: Request) -> HTMLResponse:
    """The live view's body, fetched by the page's script to update without a reload."""
    return TEMPLATES.TemplateResponse(request, "_live.html", _live_context(request))


@router.get("/units", response_class=HTMLResponse)
def units_page(
    request: Request,
    query: Annotated[UnitQuery, Depends(unit_query)],
    after: Annotated[str | None, Query()] = None,
) -> HTMLResponse:
    """Unit search and listing, newest change first, keyset-paged."""
    db = _db(request)
    page = audit_api_queries.list_units(
        db, query.filter, limit=PAGE_SIZE, descending=True, after=decode_cursor(after)
    )
    params = {k: v for k, v in request.query_params.items() if k != "after"}
    next_href = None
    if page.next_after:
        next_href = "/units?" + urlencode({**params, "after": encode_cursor(page.next_after)})
    context = {
        "units": page.items,
        "total": audit_api_queries.count_units(db, query.filter),
        "params": params,
        "states": STATES,
        "next_href": next_href,
    }
    return TEMPLATES.TemplateResponse(request, "units.html", context)


@router.get("/units/{key}", response_class=HTMLResponse)
def unit_page(request: Request, key: str) -> HTMLResponse:
    """One unit: identity, stage times and its audit records."""
    timeline = audit.unit_timeline(_db(request), key[:128])
    if timeline is None:
        raise HTTPException(404, f"no unit with registration ID, serial or MAC {key[:128]!r}")
    stage_times = [(s, t) for s, t in timeline.unit.stage_times.items() if t is not None]
    unit = timeline.unit
    # Both scan times: when the station scanned (its clock) and when the pipeline received it (`scanned`).
    for stage, at in (
        ("station_scanned", unit.station_scanned_at),
        ("assignment_overdue", unit.assignment_overdue_at),
    ):
        if at is not None:
            stage_times.append((stage, at))
    stage_times.sort(key=lambda item: item[1])
    context = {"unit": timeline.unit, "stage_times": stage_times, "records": timeline.records}
    return TEMPLATES.TemplateResponse(request, "unit.html", context)
