"""HttpDpsClient wire behaviour against a real scripted HTTP server: what it sends and how it reads
DPS's answers (recorded shapes, azure-notes §1.5). The full behaviour is also tested against the emulator."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from typing import Any
from urllib.parse import unquote

import pytest
from test_azure_http import Reply, Seen, Sleeps, StartServer, scripted_servers  # tests/unit is on sys.path

from pipeline.azure import dps_bodies as bodies
from pipeline.azure.dps_service import HttpDpsClient
from pipeline.azure.pacing import Backoff
from pipeline.azure.ports import AzureError, EnrollmentConflict, EnrollmentGroupSpec, IndividualEnrollmentSpec
from pipeline.azure.sas import parse_token, verify_signature
from pipeline.domain.keys import SecretKey


@pytest.fixture
def scripted() -> Iterator[StartServer]:
    yield from scripted_servers()


POLICY_KEY = SecretKey(b"k" * 32)
OURS = (SecretKey(b"a" * 32), SecretKey(b"b" * 32))
THEIRS = (SecretKey(b"c" * 32), SecretKey(b"d" * 32))
EXISTS = {"errorCode": 409201, "errorStatus": "Enrollment already exists."}


def client_for(url: str, **kwargs: Any) -> HttpDpsClient:
    key = POLICY_KEY.reveal_base64()
    cs = f"HostName={url};SharedAccessKeyName=provisioningserviceowner;SharedAccessKey={key}"
    return HttpDpsClient.from_connection_string(cs, sleep=Sleeps(), backoff=Backoff(max_attempts=3), **kwargs)


def spec(n: int, keys: tuple[SecretKey, SecretKey] = OURS) -> IndividualEnrollmentSpec:
    return IndividualEnrollmentSpec(f"unit-{n:03d}", keys[0], keys[1], tags={"n": n})


def test_service_token_uses_the_hostname_exactly_as_given(scripted: Any) -> None:
    server = scripted(lambda s: (404, {}, {"errorCode": 404201, "message": "not found"}))
    with client_for(server.url) as client:
        assert client.get_individual_enrollment("unit-001") is None
        assert server.url in repr(client) and POLICY_KEY.reveal_base64() not in repr(client)
    seen = server.seen[0]
    token = parse_token(seen.headers["authorization"])
    assert unquote(token.sr) == server.url and token.skn == "provisioningserviceowner"
    assert verify_signature(token, POLICY_KEY)
    assert seen.path == "/enrollments/unit-001?api-version=2021-10-01"


def test_bulk_create_sends_at_most_ten_per_call_in_create_mode(scripted: Any) -> None:
    server = scripted(lambda s: (200, {}, {"isSuccessful": True, "errors": []}))
    with client_for(server.url) as client:
        results = client.ensure_individual_enrollments([spec(n) for n in range(25)])
    assert results == {f"unit-{n:03d}": None for n in range(25)}
    sent = [json.loads(s.body) for s in server.seen]
    assert [len(b["enrollments"]) for b in sent] == [10, 10, 5]
    assert {b["mode"] for b in sent} == {"create"}
    assert all(s.method == "POST" and s.path.startswith("/enrollments?") for s in server.seen)


def bulk_dps(existing_keys: dict[str, tuple[SecretKey, SecretKey]]) -> Any:
    """Answer bulk create with 409201 for `existing_keys`, and their keys on attestationmechanism."""

    def respond(seen: Seen) -> Reply:
        if seen.path.startswith("/enrollments?"):
            ids = [e["registrationId"] for e in json.loads(seen.body)["enrollments"]]
            errors = [{"registrationId": i, **EXISTS} for i in ids if i in existing_keys]
            return 200, {}, {"isSuccessful": not errors, "errors": errors}
        registration_id = seen.path.split("/")[2]
        return 200, {}, bodies.symmetric_key_attestation(*existing_keys[registration_id])

    return respond


def test_replay_with_the_same_keys_is_success_and_different_keys_a_conflict(scripted: Any) -> None:
    server = scripted(bulk_dps({"unit-001": OURS, "unit-002": THEIRS}))
    with client_for(server.url) as client:
        results = client.ensure_individual_enrollments([spec(0), spec(1), spec(2)])
    assert results["unit-000"] is None and results["unit-001"] is None
    conflict = results["unit-002"]
    assert isinstance(conflict, EnrollmentConflict) and conflict.error_code == 409201
    for key in (*OURS, *THEIRS):
        assert key.reveal_base64() not in str(conflict)
    keys_calls = [s for s in server.seen if s.path.split("?")[0].endswith("/attestationmechanism")]
    assert len(keys_calls) == 2 and all(s.method == "POST" and s.body == b"" for s in keys_calls)


def test_other_per_item_errors_are_reported_per_item(scripted: Any) -> None:
    def respond(seen: Seen) -> Reply:
        return (
            200,
            {},
            {
                "isSuccessful": False,
                "errors": [{"registrationId": "UNIT-001", "errorCode": 400004, "errorStatus": "Bad request"}],
            },
        )

    server = scripted(respond)
    with client_for(server.url) as client:
        results = client.ensure_individual_enrollments([spec(0), spec(1)])
    assert results["unit-000"] is None
    error = results["unit-001"]
    assert error is not None and (error.status, error.error_code, error.retryable) == (400, 400004, False)


def test_a_failed_bulk_call_fails_every_item_of_its_chunk(scripted: Any) -> None:
    server = scripted(lambda s: (503, {}, {"errorCode": 503000, "message": "busy"}))
    with client_for(server.url) as client:
        results = client.ensure_individual_enrollments([spec(0), spec(1)])
    assert all(isinstance(e, AzureError) and e.retryable for e in results.values())
    assert len(server.seen) == 3  # max_attempts


def group_dps(existing: tuple[SecretKey, SecretKey] | None) -> Any:
    def respond(seen: Seen) -> Reply:
        if seen.method == "GET":
            if existing is None:
                return 404, {}, {"errorCode": 404204, "message": "not found"}
            return (
                200,
                {},
                {"enrollmentGroupId": "line-3", "attestation": {"type": "symmetricKey"}, "etag": "e"},
            )
        if seen.method == "PUT":
            return 200, {}, json.loads(seen.body)
        assert existing is not None
        return 200, {}, bodies.symmetric_key_attestation(*existing)

    return respond


@pytest.mark.parametrize(("existing", "calls"), [(None, ["GET", "PUT"]), (OURS, ["GET", "POST"])])
def test_group_is_created_once_and_replays_are_compared(
    scripted: Any, existing: Any, calls: list[str]
) -> None:
    server = scripted(group_dps(existing))
    with client_for(server.url) as client:
        client.ensure_enrollment_group(EnrollmentGroupSpec("line-3", *OURS))
    assert [s.method for s in server.seen] == calls


def test_group_with_another_key_is_a_conflict_and_is_not_overwritten(scripted: Any) -> None:
    server = scripted(group_dps(THEIRS))
    with client_for(server.url) as client, pytest.raises(EnrollmentConflict):
        client.ensure_enrollment_group(EnrollmentGroupSpec("line-3", *OURS))
    assert "PUT" not in [s.method for s in server.seen]


def test_disable_resends_keys_with_if_match(scripted: Any) -> None:
    record = {
        "registrationId": "unit-001",
        "attestation": {"type": "symmetricKey"},
        "etag": "IjEi",
        "provisioningStatus": "enabled",
        "capabilities": {"iotEdge": True},
        "registrationState": {"registrationId": "unit-001", "status": "assigned"},
    }

    def respond(seen: Seen) -> Reply:
        if seen.method == "GET":
            return 200, {}, record
        if seen.method == "POST":
            return 200, {}, bodies.symmetric_key_attestation(*OURS)
        return 200, {}, json.loads(seen.body)

    server = scripted(respond)
    with client_for(server.url) as client:
        client.set_individual_enrollment_status("unit-001", "disabled")
    put = server.seen[-1]
    sent = json.loads(put.body)
    assert put.method == "PUT" and put.headers["if-match"] == "IjEi"
    assert sent["provisioningStatus"] == "disabled" and "registrationState" not in sent and "etag" not in sent
    assert bodies.parse_symmetric_keys(sent["attestation"]) == bodies.SymmetricKeys(*OURS)


def test_query_follows_continuation_tokens(scripted: Any) -> None:
    pages = {None: (["a", "b"], "c1"), "c1": (["c", "d"], "c2"), "c2": (["e"], None)}

    def respond(seen: Seen) -> Reply:
        ids, nxt = pages[seen.headers.get("x-ms-continuation")]
        headers = {"x-ms-continuation": nxt} if nxt else {}
        return 200, headers, [{"registrationId": i, "status": "assigned"} for i in ids]

    server = scripted(respond)
    with client_for(server.url) as client:
        states = client.query_group_registrations("line-3", page_size=2)
    assert [s.registration_id for s in states] == ["a", "b", "c", "d", "e"]
    assert {s.headers["x-ms-max-item-count"] for s in server.seen} == {"2"}
    assert all(s.path.startswith("/registrations/line-3/query?") for s in server.seen)


def test_pacer_sleeps_when_the_bucket_is_empty(scripted: Any) -> None:
    server = scripted(lambda s: (404, {}, None))
    sleeps = Sleeps()
    cs = f"HostName={server.url};SharedAccessKeyName=p;SharedAccessKey={POLICY_KEY.reveal_base64()}"
    with HttpDpsClient.from_connection_string(
        cs, operations_per_minute=60, burst=2, sleep=sleeps, clock=lambda: 0.0
    ) as client:
        for n in range(4):
            client.get_registration_state(f"unit-{n}")
    assert sleeps == pytest.approx([1.0, 2.0])


def test_no_key_or_token_reaches_the_logs(scripted: Any, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    answers = iter([(503, {"Retry-After": "0"}, None)])
    respond = bulk_dps({"unit-001": THEIRS})
    server = scripted(lambda seen: next(answers, None) or respond(seen))
    with client_for(server.url) as client:
        results = client.ensure_individual_enrollments([spec(1)])
    assert isinstance(results["unit-001"], EnrollmentConflict)
    assert "retry 1" in caplog.text
    token = server.seen[0].headers["authorization"]
    for secret in (POLICY_KEY.reveal_base64(), *(k.reveal_base64() for k in (*OURS, *THEIRS)), token):
        assert secret not in caplog.text and secret not in str(results["unit-001"])
