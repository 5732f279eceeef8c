"""CachedSasToken: signed once, reused, renewed before expiry; service `sr` is the HostName as given."""

from __future__ import annotations

from urllib.parse import unquote

import pytest

from pipeline.azure.sas import parse_token, verify_signature
from pipeline.azure.tokens import CachedSasToken
from pipeline.domain.keys import SecretKey

KEY = SecretKey(b"t" * 32)


class WallClock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


def test_token_is_cached_then_renewed_before_expiry() -> None:
    clock = WallClock()
    token = CachedSasToken(
        "mydps.azure-devices-provisioning.net", KEY, policy="provisioningserviceowner", clock=clock
    )
    first = token()
    assert parse_token(first).expiry == 1_700_003_600
    clock.now += 3000
    assert token() == first
    clock.now += 301
    renewed = token()
    assert renewed != first and parse_token(renewed).expiry == int(clock.now) + 3600


@pytest.mark.parametrize(
    "host", ["mydps.azure-devices-provisioning.net", "http://127.0.0.1:5000", "localhost:8443"]
)
def test_service_sr_is_the_hostname_exactly_as_given(host: str) -> None:
    parsed = parse_token(CachedSasToken(host, KEY, policy="p", clock=WallClock())())
    assert unquote(parsed.sr) == host and parsed.skn == "p" and verify_signature(parsed, KEY)


def test_repr_hides_the_key() -> None:
    token = CachedSasToken("h", KEY, policy="p")
    assert KEY.reveal_base64() not in repr(token) and "hidden" in repr(token)


def test_renewal_margin_must_be_shorter_than_ttl() -> None:
    with pytest.raises(ValueError):
        CachedSasToken("h", KEY, policy=None, ttl=60, renew_before=60)
