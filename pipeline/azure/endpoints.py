"""Whether the DPS service host and the devices' global endpoint belong to the same DPS (pure).

Why: the service connection string is what the pipeline enrolls with; the global endpoint is what the
flashed devices register with. If they point at different services (the emulator's connection string
with Azure's default global endpoint), every enrollment succeeds, every station says PASS, and every
unit stays `flashed` forever because its device registers with a DPS that never heard of it.

Rules: an Azure DPS (`*.azure-devices-provisioning.net`, or a sovereign cloud's suffix) goes with the
global endpoint of the same cloud, or with any other HTTPS endpoint set on purpose (a private or custom
one) — but not with a plain-HTTP or loopback address, which is an emulator's. Any other service (the
emulator) goes with its own device endpoint: never an Azure host, and on the same port as the service.
Not responsible for: reachability (`edgeline doctor`) or parsing the connection string (pipeline.azure.sas).
"""

from __future__ import annotations

from urllib.parse import urlsplit

AZURE_SUFFIXES = (
    ".azure-devices-provisioning.net",
    ".azure-devices-provisioning.cn",
    ".azure-devices-provisioning.us",
)
_LOOPBACK = ("localhost", "127.0.0.1", "::1")
_SETTINGS = (
    "dps_connection_string (EDGELINE_DPS_CONNECTION_STRING) and "
    "dps_global_endpoint (EDGELINE_DPS_GLOBAL_ENDPOINT)"
)


def _split(address: str, default_scheme: str) -> tuple[str, str, int | None]:
    """(scheme, lower-case host, port) of `host[:port]` or `scheme://host[:port][/...]`."""
    text = address.strip()
    parts = urlsplit(text if "://" in text else f"{default_scheme}://{text}")
    try:
        port = parts.port
    except ValueError:
        port = None
    return parts.scheme.lower(), (parts.hostname or "").lower(), port


def _port(scheme: str, port: int | None) -> int:
    return port or (443 if scheme == "https" else 80)


def azure_suffix(host: str) -> str | None:
    """The Azure DPS domain suffix `host` ends with, or None for any other host."""
    return next((suffix for suffix in AZURE_SUFFIXES if host.endswith(suffix)), None)


def endpoint_mismatch(service_host: str, global_endpoint: str) -> str | None:
    """One line saying why `global_endpoint` cannot belong to the DPS at `service_host`, else None."""
    service_scheme, host, port = _split(service_host, "https")
    scheme, endpoint_host, endpoint_port = _split(global_endpoint, "https")
    suffix = azure_suffix(host)
    if suffix is not None:
        global_host = f"global{suffix}"
        if azure_suffix(endpoint_host) not in (None, suffix):
            why = f"is in another Azure cloud than the DPS {host}; use https://{global_host}"
        elif scheme != "https" or endpoint_host in _LOOPBACK:
            why = f"looks like an emulator but the DPS is Azure's {host}; use https://{global_host}"
        else:
            return None
    elif azure_suffix(endpoint_host) is not None:
        why = (
            f"is Azure's but the DPS service is {service_host}: devices would register with Azure, which "
            "never heard of them; use that service's own device endpoint (e.g. the emulator's "
            "`device global endpoint`)"
        )
    elif _port(service_scheme, port) != _port(scheme, endpoint_port):
        why = (
            f"is on another port than the DPS service {service_host}; an emulator serves devices on its port"
        )
    else:
        return None
    return f"the device global endpoint {global_endpoint!r} {why} (settings {_SETTINGS})"
