"""Broker URLs (`mqtt://[user:pass@]host[:1883]`, `mqtts://...:8883`) parsed into a BrokerAddress.

Responsible for: strict parsing with errors that name the setting, and keeping the password out of
`repr`/`str` and logs.
Not responsible for: connecting (pipeline.bus.paho) or reading settings (pipeline.config).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import unquote, urlsplit

from pipeline.bus.ports import BusError

SETTING = "EDGELINE_MQTT_URL"
DEFAULT_PORTS = {"mqtt": 1883, "mqtts": 8883}


@dataclass(frozen=True, slots=True)
class BrokerAddress:
    """Where the broker is and how to log in; `str()` gives `host:port`, never the credentials."""

    host: str
    port: int
    tls: bool = False
    username: str | None = None
    password: str | None = field(default=None, repr=False)

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def url(self) -> str:
        """The URL without credentials, for messages and logs."""
        return f"{'mqtts' if self.tls else 'mqtt'}://{self}"


def parse_mqtt_url(url: str) -> BrokerAddress:
    """Parse `url`, raising BusError that says what is wrong and which setting to fix."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError as exc:
        raise BusError(f"MQTT URL is not valid ({exc}) (setting {SETTING})") from None
    if parts.scheme not in DEFAULT_PORTS:
        got = parts.scheme or "no scheme"
        raise BusError(f"MQTT URL must start with mqtt:// or mqtts://, got {got!r} (setting {SETTING})")
    if not parts.hostname:
        raise BusError(f"MQTT URL has no host, e.g. mqtt://127.0.0.1:1883 (setting {SETTING})")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise BusError(f"MQTT URL must be scheme://[user:pass@]host[:port] only (setting {SETTING})")
    return BrokerAddress(
        host=parts.hostname,
        port=port or DEFAULT_PORTS[parts.scheme],
        tls=parts.scheme == "mqtts",
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password is not None else None,
    )


@dataclass(frozen=True, slots=True)
class TlsFiles:
    """Files for an mqtts:// connection: the CA to trust, and optionally this client's certificate + key."""

    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None

    @classmethod
    def from_settings(cls, ca_file: str, cert_file: str, key_file: str) -> TlsFiles:
        """Empty settings mean "not set" (system trust store, no client certificate)."""
        return cls(ca_file or None, cert_file or None, key_file or None)
