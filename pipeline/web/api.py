"""The read-only audit API under /api/v1 (OpenAPI at /api/v1/openapi.json, docs at /api/v1/docs).

Roles: viewer reads units, timelines, stations, failures and the summary; auditor also exports; admin is
everything an auditor is (token management stays on the command line).

Responsible for: routes, response shapes, streaming exports.
Not responsible for: SQL (pipeline.db.audit_api_queries), tokens (pipeline.web.auth), signing
(pipeline.exports.signed_export).
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import JSONResponse, StreamingResponse

from pipeline.db import audit, audit_api_queries
from pipeline.db.audit import UNIT_COLUMNS
from pipeline.db.session import Database
from pipeline.exports.signed_export import signed_export_lines
from pipeline.web import live
from pipeline.web.auth import require
from pipeline.web.params import UnitQuery, decode_cursor, encode_cursor, unit_query, utc

router = APIRouter(prefix="/api/v1", tags=["audit"])
viewer = Depends(require("viewer"))
auditor = Depends(require("auditor"))
CSV_BATCH = 500


def _db(request: Request) -> Database:
    db: Database = request.app.state.db
    return db


@router.get("/units", dependencies=[viewer], summary="units by filter, keyset-paged")
def list_units(
    request: Request,
    query: Annotated[UnitQuery, Depends(unit_query)],
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    sort: Annotated[Literal["updated_at", "-updated_at"], Query()] = "-updated_at",
    after: Annotated[str | None, Query(description="`next_cursor` of the previous page")] = None,
) -> JSONResponse:
    """One page of units; pass `next_cursor` as `after` for the next one (stable under inserts)."""
    page = audit_api_queries.list_units(
        _db(request), query.filter, limit=limit, descending=sort.startswith("-"), after=decode_cursor(after)
    )
    # Already JSON-ready: a JSONResponse skips FastAPI's per-field re-encoding (a third of the time).
    return JSONResponse(
        {
            "items": [u.to_dict() for u in page.items],
            "next_cursor": encode_cursor(page.next_after) if page.next_after else None,
        }
    )


@router.get("/units/{key}", dependencies=[viewer], summary="one unit's full timeline")
def unit_timeline(request: Request, key: str) -> dict[str, Any]:
    """The unit found by registration ID, serial or MAC, its stage times and every audit record."""
    timeline = audit.unit_timeline(_db(request), key[:128])
    if timeline is None:
        raise HTTPException(404, f"no unit with registration ID, serial or MAC {key[:128]!r}")
    return {
        "unit": timeline.unit.to_dict(),
        "stage_times": {k: v.isoformat() if v else None for k, v in timeline.unit.stage_times.items()},
        "records": [r.to_dict() for r in timeline.records],
    }


@router.get("/stations", dependencies=[viewer], summary="stations and their PASS/FAIL yield")
def stations(request: Request) -> dict[str, Any]:
    """Per station and per station port: passed, failed, total and yield."""
    station_totals, port_totals = audit_api_queries.station_yield(_db(request))
    ports = [live.yield_dict(p) for p in port_totals]
    result = []
    for s in station_totals:
        entry = live.yield_dict(s)
        entry["ports"] = [p for p in ports if p["station"] == s.station]
        result.append(entry)
    return {"stations": result}


@router.get("/failures", dependencies=[viewer], summary="failed units grouped by reason")
def failures(request: Request, limit: Annotated[int, Query(ge=1, le=200)] = 20) -> dict[str, Any]:
    """The failure Pareto: reasons, most frequent first."""
    pareto = audit_api_queries.failure_pareto(_db(request), limit=limit)
    return {"failures": [{"reason": r, "count": n} for r, n in pareto]}


@router.get("/summary", dependencies=[viewer], summary="the live line view's numbers")
def summary(request: Request) -> dict[str, Any]:
    """Units per state, yields, Pareto, throughput and stuck units, as the dashboard shows them."""
    return live.snapshot(_db(request), stuck_seconds=request.app.state.stuck_seconds).to_dict()


@router.get("/export/units.csv", dependencies=[auditor], summary="units as CSV (streamed)")
def export_units_csv(request: Request, query: Annotated[UnitQuery, Depends(unit_query)]) -> StreamingResponse:
    """Every unit matching the filters, streamed from a server-side cursor."""
    rows = audit_api_queries.stream_units(_db(request), query.filter)
    return StreamingResponse(_csv_lines(rows), media_type="text/csv", headers=_attachment("units.csv"))


@router.get("/export/units.json", dependencies=[auditor], summary="units as a JSON array (streamed)")
def export_units_json(
    request: Request, query: Annotated[UnitQuery, Depends(unit_query)]
) -> StreamingResponse:
    """Every unit matching the filters as one JSON array, streamed."""
    rows = audit_api_queries.stream_units(_db(request), query.filter)
    body = _batched(_json_array(rows))
    return StreamingResponse(body, media_type="application/json", headers=_attachment("units.json"))


@router.get("/export/records.jsonl", dependencies=[auditor], summary="signed audit records (JSON Lines)")
def export_records(
    request: Request,
    since: Annotated[datetime | None, Query()] = None,
    until: Annotated[datetime | None, Query()] = None,
) -> StreamingResponse:
    """Audit records in id order with the chain head they cover, signed with the site key."""
    signer = request.app.state.signer
    if signer is None:
        raise HTTPException(
            409,
            "no signing key: set web_signing_key_file (EDGELINE_WEB_SIGNING_KEY_FILE), see `audit keygen`",
        )
    since, until = utc(since), utc(until)
    records = audit_api_queries.stream_records(_db(request), since=since, until=until)
    scope = {"since": since.isoformat() if since else None, "until": until.isoformat() if until else None}
    lines = _batched(signed_export_lines(records, signer, scope=scope))
    return StreamingResponse(lines, media_type="application/x-ndjson", headers=_attachment("audit.jsonl"))


def _attachment(name: str) -> dict[str, str]:
    return {"Content-Disposition": f'attachment; filename="{name}"'}


def _csv_lines(rows: Iterator[audit.UnitView]) -> Iterator[str]:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(UNIT_COLUMNS), lineterminator="\n")
    writer.writeheader()
    for count, unit in enumerate(rows, start=1):
        writer.writerow(unit.to_dict())
        if count % CSV_BATCH == 0:
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue()


def _batched(pieces: Iterator[str], size: int = CSV_BATCH) -> Iterator[str]:
    """Join small pieces into chunks: each chunk is one hop through the server's thread pool."""
    chunk: list[str] = []
    for piece in pieces:
        chunk.append(piece)
        if len(chunk) >= size:
            yield "".join(chunk)
            chunk.clear()
    yield "".join(chunk)


def _json_array(rows: Iterator[audit.UnitView]) -> Iterator[str]:
    yield "["
    for count, unit in enumerate(rows):
        yield ("," if count else "") + "\n" + json.dumps(unit.to_dict(), ensure_ascii=False)
    yield "\n]\n"
