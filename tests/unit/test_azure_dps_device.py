"""HttpDeviceRegistrar against a real scripted HTTP server: register → poll → final, Retry-After, 429."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from test_azure_http import Reply, Seen, StartServer, scripted_servers  # tests/unit is on sys.path

from pipeline.azure.dps_device import HttpDeviceRegistrar, parse_operation_status
from pipeline.azure.pacing import Backoff
from pipeline.azure.ports import AzureError
from pipeline.azure.sas import parse_token, verify_signature
from pipeline.domain.keys import SecretKey


@pytest.fixture
def scripted() -> Iterator[StartServer]:
    yield from scripted_servers()


KEY = SecretKey.from_base64(
    "18RQk/hOPJR9EbsJlk2j8WA6vWaj/yi+oaYg7zmxfQNdOyMSu+SJ8O7TSlZhDJCYmn4rzEiVKIzNiVAWjLxrGA=="
)
OP = "5.316aac5bdc130deb.b1e02da8-c3a0-4ff2-a121-7ea7a6b7f550"
ASSIGNING = {"operationId": OP, "status": "assigning"}
ASSIGNED = {
    "operationId": OP,
    "status": "assigned",
    "registrationState": {
        "registrationId": "my-symkey-device",
        "assignedHub": "MyExampleHub.azure-devices.net",
        "deviceId": "my-symkey-device",
        "status": "assigned",
        "substatus": "initialAssignment",
    },
}


class Clock:
    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def registrar(clock: Clock, **kwargs: Any) -> HttpDeviceRegistrar:
    return HttpDeviceRegistrar(clock=clock, sleep=clock.sleep, backoff=Backoff(max_attempts=3), **kwargs)


def test_parse_operation_status_variants() -> None:
    assert parse_operation_status(ASSIGNING) == ("assigning", None, OP)
    status, result, _ = parse_operation_status(ASSIGNED)
    assert status == "assigned" and result is not None
    assert (result.assigned_hub, result.device_id) == ("MyExampleHub.azure-devices.net", "my-symkey-device")
    _, failed, _ = parse_operation_status(
        {
            "status": "failed",
            "registrationState": {
                "registrationId": "x",
                "status": "failed",
                "errorCode": 400208,
                "errorMessage": "no hub",
            },
        }
    )
    assert failed is not None and (failed.error_code, failed.error_message) == (400208, "no hub")
    _, disabled, _ = parse_operation_status({"operationId": OP, "status": "disabled"})
    assert disabled is not None and disabled.assigned_hub is None
    with pytest.raises(AzureError):
        parse_operation_status({"status": "exploded"})


def test_register_then_poll_until_assigned(scripted: Any) -> None:
    def respond(seen: Seen) -> Reply:
        if seen.method == "PUT":
            return 202, {"Retry-After": "3"}, ASSIGNING
        polls = sum(1 for s in server.seen if s.method == "GET")
        return (200, {}, ASSIGNED) if polls >= 2 else (202, {"Retry-After": "0"}, ASSIGNING)

    server = scripted(respond)
    clock = Clock()
    result = registrar(clock, poll_interval=1.0).register(
        global_endpoint=server.url, id_scope="0ne00111111", registration_id="my-symkey-device", key=KEY
    )
    assert result.status == "assigned" and result.device_id == "my-symkey-device"
    put, *polls = server.seen
    assert put.path == "/0ne00111111/registrations/my-symkey-device/register?api-version=2021-06-01"
    assert json.loads(put.body) == {"registrationId": "my-symkey-device"}
    assert (
        polls[0].path == f"/0ne00111111/registrations/my-symkey-device/operations/{OP}?api-version=2021-06-01"
    )
    assert clock.sleeps == [3.0, 1.0]  # Retry-After when longer than the floor, else the floor
    token = parse_token(put.headers["authorization"])
    assert token.sr == "0ne00111111%2Fregistrations%2Fmy-symkey-device" and token.skn == "registration"
    assert verify_signature(token, KEY)


def test_throttled_register_is_retried_after_retry_after(scripted: Any) -> None:
    answers = iter(
        [(429, {"Retry-After": "2"}, {"errorCode": 429001, "message": "throttled"}), (200, {}, ASSIGNED)]
    )
    server = scripted(lambda seen: next(answers))
    clock = Clock()
    result = registrar(clock).register(global_endpoint=server.url, id_scope="s", registration_id="r", key=KEY)
    assert result.status == "assigned" and clock.sleeps == [2.0] and len(server.seen) == 2


def test_unauthorized_is_a_permanent_error(scripted: Any) -> None:
    server = scripted(lambda seen: (401, {}, {"errorCode": 401002, "message": "Unauthorized"}))
    with pytest.raises(AzureError) as caught:
        registrar(Clock()).register(global_endpoint=server.url, id_scope="s", registration_id="r", key=KEY)
    assert (caught.value.status, caught.value.error_code, caught.value.retryable) == (401, 401002, False)
    assert KEY.reveal_base64() not in str(caught.value)


def test_gives_up_after_the_timeout_as_retryable(scripted: Any) -> None:
    server = scripted(lambda seen: (202, {"Retry-After": "3"}, ASSIGNING))
    clock = Clock()
    with pytest.raises(AzureError) as caught:
        registrar(clock).register(
            global_endpoint=server.url, id_scope="s", registration_id="r", key=KEY, timeout=10.0
        )
    assert caught.value.retryable and "assigning" in str(caught.value)
    assert clock.now <= 10.0


def test_one_pooled_client_per_endpoint(scripted: Any) -> None:
    server = scripted(lambda seen: (200, {}, ASSIGNED))
    device = registrar(Clock())
    for n in range(3):
        device.register(global_endpoint=server.url + "/", id_scope="s", registration_id=f"r{n}", key=KEY)
    assert repr(device) == f"HttpDeviceRegistrar(endpoints={[server.url]!r})"
    device.close()


def test_max_poll_interval_caps_retry_after_between_polls(scripted: Any) -> None:
    answers = iter([(202, {"Retry-After": "3"}, ASSIGNING), (200, {}, ASSIGNED)])
    server = scripted(lambda seen: next(answers))
    clock = Clock()
    registrar(clock, poll_interval=0.05, max_poll_interval=0.2).register(
        global_endpoint=server.url, id_scope="s", registration_id="r", key=KEY
    )
    assert clock.sleeps == [0.2]
