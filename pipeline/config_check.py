"""Checks that the settings a command needs are all there and consistent, reported all at once.

Responsible for: `validate_for(settings, role)`, which lists every missing or invalid setting for
`edgeline up`, a station or the demo in one ConfigError (one line each, naming the setting and what
to do), so an operator fixes the configuration in one go instead of one error per start.
Not responsible for: reachability of the broker, database or DPS (`edgeline doctor` checks those), or
value ranges of single settings (pipeline.config checks those while loading).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

from pipeline.azure.endpoints import endpoint_mismatch
from pipeline.azure.sas import SasError, parse_connection_string
from pipeline.bus.ports import BusError
from pipeline.bus.url import parse_mqtt_url
from pipeline.config import ConfigError, Settings, raise_if_any

Role = Literal["up", "station", "demo", "doctor"]
_DPS = "dps_connection_string (EDGELINE_DPS_CONNECTION_STRING)"


def mqtt_missing(s: Settings) -> list[str]:
    """The broker URL is set (a station reports a malformed one itself, with its own exit code)."""
    return [] if s.mqtt_url else ["mqtt_url (EDGELINE_MQTT_URL) is not set, e.g. mqtt://127.0.0.1:1883"]


def mqtt_problems(s: Settings) -> list[str]:
    """The broker URL is set and well-formed."""
    if not s.mqtt_url:
        return mqtt_missing(s)
    try:
        parse_mqtt_url(s.mqtt_url)
    except BusError as exc:
        return [str(exc)]
    return []


def dps_problems(s: Settings) -> list[str]:
    """The DPS settings are complete, well-formed, and the device endpoint goes with the service."""
    return dps_credential_problems(s) + endpoint_problems(s)


def dps_credential_problems(s: Settings) -> list[str]:
    """The DPS connection string and ID scope are set and well-formed."""
    problems = []
    if not s.dps_connection_string:
        problems.append(
            f"{_DPS} is not set: copy it from the DPS instance's shared access policies "
            "(provisioningserviceowner), or from `edgeline emulator`'s output"
        )
    else:
        try:
            parse_connection_string(s.dps_connection_string, what=_DPS)
        except SasError as exc:
            problems.append(str(exc))
    if not s.dps_id_scope:
        problems.append("dps_id_scope (EDGELINE_DPS_ID_SCOPE) is not set: it is on the DPS overview page")
    return problems


def endpoint_problems(s: Settings) -> list[str]:
    """The devices' global endpoint belongs to the DPS the pipeline enrolls with (when both are known)."""
    try:
        host = parse_connection_string(s.dps_connection_string, what=_DPS).host_name
    except SasError:
        return []  # reported by dps_problems when the connection string is required
    mismatch = endpoint_mismatch(host, s.dps_global_endpoint)
    return [mismatch] if mismatch else []


def hub_problems(s: Settings) -> list[str]:
    """Every IoT hub connection string is well-formed."""
    problems = []
    for index, text in enumerate(s.iot_hub_connection_strings, start=1):
        what = f"iot_hub_connection_strings (EDGELINE_IOT_HUB_CONNECTION_STRINGS) entry {index}"
        try:
            parse_connection_string(text, what=what)
        except SasError as exc:
            problems.append(str(exc))
    return problems


def master_key_problems(s: Settings) -> list[str]:
    """The master key loads (EDGELINE_MASTER_KEY or a 0600 key file); with a PKCS#11 key store or master
    key, the token opens with its PIN and holds the key objects named."""
    if s.pkcs11_master_key_label or s.key_store == "pkcs11":
        from pipeline.keystore.custody import key_custody_problem

        problem = key_custody_problem(s)
        if problem is not None or s.pkcs11_master_key_label:
            return [problem] if problem else []
    try:
        s.load_master_key()
    except ConfigError as exc:
        return [str(exc)]
    return []


def online_check_problems(s: Settings) -> list[str]:
    """`online_check` reads the $edgeAgent module twins from the hubs: it needs their connection strings."""
    if s.online_check and not s.iot_hub_connection_strings:
        return [
            "online_check needs iot_hub_connection_strings (EDGELINE_IOT_HUB_CONNECTION_STRINGS) to read "
            "the $edgeAgent module twins, or set online_check = false"
        ]
    return []


_CHECKS: dict[Role, tuple[Callable[[Settings], list[str]], ...]] = {
    "up": (mqtt_problems, dps_problems, hub_problems, master_key_problems, online_check_problems),
    "doctor": (mqtt_problems, dps_problems, hub_problems, master_key_problems, online_check_problems),
    "station": (mqtt_missing, endpoint_problems),
    "demo": (endpoint_problems, hub_problems),
}


def problems_for(settings: Settings, role: Role) -> list[str]:
    """Every problem of `settings` for running as `role`, one line each."""
    return [problem for check in _CHECKS[role] for problem in check(settings)]


def validate_for(settings: Settings, role: Role) -> None:
    """Raise one ConfigError listing every missing or invalid setting for `role`, if there is any."""
    raise_if_any(problems_for(settings, role))
