"""The audit API and dashboard routes in-process (ASGI) over a real migrated database (SQLite and
PostgreSQL): auth and roles, 422s naming the parameter, filters, keyset paging, yields, exports, cookie."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from web_helpers import Seeded, seed

from pipeline.crypto.site_signing import generate_key_pair, load_public_key, load_signer
from pipeline.db.api_tokens import create_token, revoke_token
from pipeline.db.session import Database
from pipeline.exports.signed_export import verify_export
from pipeline.web.app import create_app

PLAN = [
    *[("assigned", "S1", None)] * 5,
    *[("flashed", "S2", None)] * 2,
    ("failed", "S2", "config read-back mismatch"),
    ("failed", "S2", "config read-back mismatch"),
    ("failed", "S1", "device did not answer"),
    ("keyed", "S1", None),
]


@pytest.fixture
def seeded(database: Database) -> Seeded:
    return seed(database, PLAN)


@pytest.fixture
def client(database: Database, seeded: Seeded, tmp_path: Path) -> Iterator[TestClient]:
    generate_key_pair(tmp_path / "site.key", tmp_path / "site.pub")
    app = create_app(database, stuck_seconds=60, signer=load_signer(tmp_path / "site.key"))
    with TestClient(app) as test_client:
        yield test_client


def bearer(database: Database, role: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {create_token(database, name='t', role=role)[1]}"}


@pytest.mark.parametrize(
    "path", ["/api/v1/units", "/api/v1/summary", "/api/v1/export/units.csv", "/", "/units"]
)
def test_no_token_is_401(client: TestClient, path: str) -> None:
    response = client.get(path)
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert "token" in response.text


def test_wrong_or_revoked_token_is_401(client: TestClient, database: Database) -> None:
    assert client.get("/api/v1/units", headers={"Authorization": "Bearer elt_nope"}).status_code == 401
    info, token = create_token(database, name="gone", role="admin")
    assert revoke_token(database, info.id)
    assert client.get("/api/v1/units", headers={"Authorization": f"Bearer {token}"}).status_code == 401


def test_viewer_cannot_export_but_auditor_can(client: TestClient, database: Database) -> None:
    viewer = bearer(database, "viewer")
    for path in ("/api/v1/export/units.csv", "/api/v1/export/units.json", "/api/v1/export/records.jsonl"):
        response = client.get(path, headers=viewer)
        assert response.status_code == 403, path
        assert "auditor" in response.json()["detail"]
    auditor = bearer(database, "auditor")
    rows = list(csv.DictReader(io.StringIO(client.get("/api/v1/export/units.csv", headers=auditor).text)))
    assert len(rows) == len(PLAN)
    failed = client.get("/api/v1/export/units.json?state=failed", headers=auditor).json()
    assert sorted(u["failure_reason"] for u in failed) == sorted(r for s, _, r in PLAN if s == "failed")


@pytest.mark.parametrize(
    ("query", "name"),
    [
        ("limit=0", "limit"),
        ("limit=abc", "limit"),
        ("state=exploded", "state"),
        ("since=yesterday", "since"),
        ("after=%%%", "after"),
        ("sort=serial", "sort"),
        ("verdict=maybe", "verdict"),
    ],
)
def test_bad_parameter_is_422_naming_it(
    client: TestClient, database: Database, query: str, name: str
) -> None:
    response = client.get(f"/api/v1/units?{query}", headers=bearer(database, "viewer"))
    assert response.status_code == 422
    assert f"'{name}'" in response.json()["detail"]


def test_keyset_pages_cover_every_unit_once_newest_first(client: TestClient, database: Database) -> None:
    headers, seen, cursor = bearer(database, "viewer"), [], None
    while True:
        page = client.get("/api/v1/units", params={"limit": 3, "after": cursor}, headers=headers).json()
        seen += page["items"]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert len(seen) == len(PLAN) == len({u["registration_id"] for u in seen})
    updated = [u["updated_at"] for u in seen]
    assert updated == sorted(updated, reverse=True)
    ascending = client.get("/api/v1/units?sort=updated_at&limit=500", headers=headers).json()["items"]
    assert [u["registration_id"] for u in ascending] == [u["registration_id"] for u in reversed(seen)]


def test_filters_and_search_by_mac_in_any_format(
    client: TestClient, database: Database, seeded: Seeded
) -> None:
    headers = bearer(database, "viewer")

    def ids(query: str) -> set[str]:
        return {
            u["registration_id"]
            for u in client.get(f"/api/v1/units?{query}", headers=headers).json()["items"]
        }

    assert len(ids("station=S2")) == 4
    assert len(ids("station=S2&verdict=fail")) == 2
    assert len(ids("verdict=pass")) == 7
    assert len(ids("reason=device did not answer")) == 1
    assert ids("q=02-00-00-00-00-03") == {seeded.registration_ids[3]}
    assert ids("q=" + "02:00:00:00:00:03".upper()) == {seeded.registration_ids[3]}
    assert ids("q=000004") == {seeded.registration_ids[4]}
    assert ids("stuck=true") == {seeded.registration_ids[-1]}


def test_timeline_has_stage_times_and_every_record(
    client: TestClient, database: Database, seeded: Seeded
) -> None:
    rid = seeded.registration_ids[0]
    body = client.get("/api/v1/units/02:00:00:00:00:00", headers=bearer(database, "viewer")).json()
    assert body["unit"]["registration_id"] == rid
    assert [r["kind"] for r in body["records"]] == [
        f"unit.{s}" for s in body["stage_times"] if body["stage_times"][s]
    ]
    missing = client.get("/api/v1/units/nope", headers=bearer(database, "viewer"))
    assert missing.status_code == 404 and "nope" in missing.json()["detail"]


def test_stations_yield_and_failure_pareto(client: TestClient, database: Database, seeded: Seeded) -> None:
    headers = bearer(database, "viewer")
    stations = {s["station"]: s for s in client.get("/api/v1/stations", headers=headers).json()["stations"]}
    assert (stations["S1"]["passed"], stations["S1"]["failed"], stations["S1"]["total"]) == (5, 1, 7)
    assert stations["S2"]["yield"] == 0.5
    assert sum(p["total"] for p in stations["S1"]["ports"]) == 7
    failures = client.get("/api/v1/failures", headers=headers).json()["failures"]
    assert failures == [
        {"reason": "config read-back mismatch", "count": 2},
        {"reason": "device did not answer", "count": 1},
    ]
    summary = client.get("/api/v1/summary", headers=headers).json()
    assert summary["units_by_state"] == {"assigned": 5, "flashed": 2, "failed": 3, "keyed": 1}
    assert summary["stuck"]["count"] == 1
    assert summary["stuck"]["oldest"] == [seeded.registration_ids[-1]]


def test_openapi_document_is_served(client: TestClient) -> None:
    spec = client.get("/api/v1/openapi.json").json()
    assert "/api/v1/units" in spec["paths"] and "/api/v1/export/records.jsonl" in spec["paths"]


def test_signed_export_verifies_and_tampering_names_the_record(
    client: TestClient, database: Database, tmp_path: Path
) -> None:
    response = client.get("/api/v1/export/records.jsonl", headers=bearer(database, "auditor"))
    lines = response.text.splitlines(keepends=True)
    public = load_public_key(tmp_path / "site.pub")
    assert verify_export(lines, public).ok
    edited = [*lines]
    record = json.loads(edited[4])
    record["record"]["detail"]["station"] = "S9"
    edited[4] = json.dumps(record) + "\n"
    check = verify_export(edited, public)
    assert not check.ok and check.first_bad_id == 4 and "edited" in check.reason
    removed = lines[:3] + lines[4:]
    check = verify_export(removed, public)
    assert not check.ok and check.first_bad_id == 3 and "removed" in check.reason
    inserted = [*lines[:6], lines[5], *lines[6:]]
    check = verify_export(inserted, public)
    assert not check.ok and check.first_bad_id == 5 and "inserted" in check.reason
    truncated = [*lines[:-3], lines[-1]]
    assert not verify_export(truncated, public).ok


def test_token_link_sets_a_strict_httponly_cookie_and_strips_the_token(
    client: TestClient, database: Database
) -> None:
    _, token = create_token(database, name="screen", role="viewer")
    response = client.get(f"/units?state=failed&token={token}", follow_redirects=False)
    assert response.status_code == 303 and response.headers["location"] == "/units?state=failed"
    cookie = response.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie
    page = client.get("/units?state=failed")
    assert page.status_code == 200 and page.text.count('class="state-failed"') == 3
    live = client.get("/fragments/live")
    assert 'data-state="assigned">5<' in live.text and "config read-back mismatch" in live.text


def test_metrics_expose_units_per_state(client: TestClient) -> None:
    text = client.get("/metrics").text
    assert 'edgeline_units{state="failed"} 3.0' in text
    assert "edgeline_outbox_pending 0.0" in text


def test_signed_export_without_a_key_is_409_naming_the_setting(database: Database, seeded: Seeded) -> None:
    with TestClient(create_app(database, stuck_seconds=60, signer=None)) as plain:
        response = plain.get("/api/v1/export/records.jsonl", headers=bearer(database, "admin"))
    assert response.status_code == 409 and "web_signing_key_file" in response.json()["detail"]
