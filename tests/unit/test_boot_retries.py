"""A simulated device retries a throttled or failed DPS registration, as aziot-identityd does."""

from __future__ import annotations

import os
from pathlib import Path

from pipeline.azure.ports import AzureError, DeviceRegistrar, DeviceRegistrationResult
from pipeline.domain.keys import SecretKey
from pipeline.edgeconfig.model import ProvisioningConfig
from pipeline.edgeconfig.render import render
from stations.boot import boot

ASSIGNED = DeviceRegistrationResult(status="assigned", assigned_hub="hub", device_id="d1")


class FakeRegistrar(DeviceRegistrar):
    """Raises the queued errors first, then answers assigned."""

    def __init__(self, *errors: AzureError) -> None:
        self.errors = list(errors)
        self.calls = 0

    def register(
        self,
        *,
        global_endpoint: str,
        id_scope: str,
        registration_id: str,
        key: SecretKey,
        timeout: float = 60.0,
    ) -> DeviceRegistrationResult:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return ASSIGNED


def _flashed(tmp_path: Path) -> Path:
    config = ProvisioningConfig(
        global_endpoint="https://global.azure-devices-provisioning.net",
        id_scope="0ne00000001",
        registration_id="d1",
        device_key=SecretKey(os.urandom(32)),
    )
    rendered = render(config, "1.2")
    path = tmp_path / "config.toml"
    path.write_bytes(rendered.content)
    return path


def test_throttling_is_retried_with_backoff(tmp_path: Path) -> None:
    slept: list[float] = []
    registrar = FakeRegistrar(AzureError("429", retryable=True), AzureError("503", retryable=True))
    assert boot(_flashed(tmp_path), registrar, retry_delays=(1, 2, 4), sleep=slept.append) == ASSIGNED
    assert (registrar.calls, slept) == (3, [1, 2])


def test_a_permanent_refusal_or_too_many_retries_fails(tmp_path: Path) -> None:
    refused = FakeRegistrar(AzureError("401 unauthorized", retryable=False))
    result = boot(_flashed(tmp_path), refused, retry_delays=(1,), sleep=lambda _: None)
    assert (result.status, refused.calls) == ("failed", 1) and "401" in (result.error_message or "")
    storm = FakeRegistrar(*(AzureError("429", retryable=True) for _ in range(5)))
    result = boot(_flashed(tmp_path), storm, retry_delays=(1, 1), sleep=lambda _: None)
    assert (result.status, storm.calls) == ("failed", 3)
