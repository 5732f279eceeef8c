"""Explains why a broker cannot be reached, in words an operator can act on.

Responsible for: turning socket errors (refused, unknown host, timeout, TLS) into short explanations,
probing the address with a plain TCP connect when no error is at hand (paho's reconnect loop swallows
its own).
Not responsible for: MQTT (pipeline.bus.paho).
"""

from __future__ import annotations

import socket
import ssl

from pipeline.bus.url import BrokerAddress


def explain(exc: OSError) -> str:
    """Return a short, actionable reason for a socket error."""
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused — is it running?"
    if isinstance(exc, socket.gaierror):
        return "unknown host name — check the host in the URL"
    if isinstance(exc, TimeoutError):
        return "timed out — is the host reachable (firewall, VPN)?"
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"TLS certificate not trusted ({exc.verify_message}) — check the CA file"
    if isinstance(exc, ssl.SSLError):
        return f"TLS handshake failed ({getattr(exc, 'reason', None) or exc}) — is it a TLS (mqtts) port?"
    return f"{exc.strerror or exc}"


def describe_unreachable(address: BrokerAddress, exc: OSError | None = None, timeout: float = 1.0) -> str:
    """Explain `exc`, or when there is none, why a TCP connect to `address` fails right now."""
    if exc is not None:
        return explain(exc)
    try:
        with socket.create_connection((address.host, address.port), timeout=timeout):
            return "the port accepts connections but the MQTT session is not up"
    except OSError as probe_error:
        return explain(probe_error)
