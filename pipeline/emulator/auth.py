"""SAS checks for the emulator's three audiences: DPS service, DPS device, IoT hub registry.

Responsible for: the acceptance rules of azure-notes §1.8 and §2.2 (and §9 for the hub): `sr` is compared
URL-decoded and case-insensitively, the signature is verified over `sr` exactly as sent, `skn` and
expiry are checked. Parsing and HMAC come from `pipeline.azure.sas` (one implementation for the team).
Not responsible for: choosing which enrollment's keys to try (provisioning does that).
"""

from __future__ import annotations

from collections.abc import Iterable

from pipeline.azure.sas import ParsedToken, SasError, is_expired, parse_token, verify_signature
from pipeline.domain.keys import SecretKey
from pipeline.emulator.http import Request
from pipeline.emulator.wire import UNAUTHORIZED, ApiError

DEVICE_POLICY = "registration"


def unauthorized(reason: str) -> ApiError:
    """401 with DPS's 401002 code; the reason names no key material."""
    return ApiError(401, UNAUTHORIZED, f"Unauthorized: {reason}")


def read_token(request: Request) -> ParsedToken:
    """Parse the Authorization header; 401 if it is missing, malformed or expired."""
    header = request.header("authorization")
    if not header:
        raise unauthorized("no Authorization header")
    try:
        token = parse_token(header.strip())
    except SasError as exc:
        raise unauthorized(str(exc)) from None
    if is_expired(token):
        raise unauthorized("SAS token expired")
    return token


def addressed_hosts(request: Request, extra: Iterable[str] = ()) -> set[str]:
    """Resource names a token may carry for this server: the Host as addressed, with or without scheme."""
    host = (request.header("host") or "").strip().lower()
    names = {host, f"http://{host}", f"https://{host}"} if host else set()
    names.update(name.lower() for name in extra)
    return names


def check_service_token(
    request: Request, policy: str, key: SecretKey, extra_hosts: Iterable[str] = ()
) -> None:
    """Accept a service SAS: sr = host as addressed (case-insensitive), skn = policy, valid sig."""
    token = read_token(request)
    if (token.skn or "").lower() != policy.lower():
        raise unauthorized("skn does not name this service's shared access policy")
    if token.resource.lower().rstrip("/") not in addressed_hosts(request, extra_hosts):
        raise unauthorized("sr is not this service's host name")
    if not verify_signature(token, key):
        raise unauthorized("signature does not verify")


def check_device_token_scope(token: ParsedToken, id_scope: str, registration_id: str) -> None:
    """Accept the resource and skn of a device token (azure-notes §2.2); the caller checks the signature."""
    if token.skn not in (None, DEVICE_POLICY):
        raise unauthorized("skn must be absent or 'registration'")
    expected = f"{id_scope}/registrations/{registration_id}".lower()
    if token.resource.lower() != expected:
        raise unauthorized("sr does not name {idScope}/registrations/{registrationId} of this request")


def first_matching_key(token: ParsedToken, keys: Iterable[SecretKey]) -> SecretKey | None:
    """Return the key that signed the token, or None."""
    for key in keys:
        if verify_signature(token, key):
            return key
    return None
