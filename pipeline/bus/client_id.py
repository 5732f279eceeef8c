"""MQTT client ids for edgeline processes: unique per running instance, stable when asked to be.

Why this matters: the broker keys a persistent session by client id. Two processes with one id take
the session from each other over and over; a process replaced by one with another id leaves its
session (and the messages the broker keeps routing to it through the shared group) behind until the
session expires. So:
- an explicit id (setting client_id / EDGELINE_CLIENT_ID, or `--client-id`) is used as given;
- with an instance name (setting instance / EDGELINE_INSTANCE, or `--instance N`, e.g. systemd's `%i`)
  the id is `edgeline-<role>-<host>-<instance>`: stable across restarts, so a restarted instance takes
  back its own session and the messages queued for it;
- otherwise `edgeline-<role>-<host>-p<pid>`: unique, so N copies per host (or per container, where the
  hostname differs) run side by side; a left-behind session expires after mqtt_session_expiry_seconds.
Not responsible for: connecting (pipeline.bus.paho).
"""

from __future__ import annotations

import os
import re
import socket

MAX_LENGTH = 64  # MQTT 3.1.1 only guarantees 23; Mosquitto, EMQX and HiveMQ accept far longer ids
_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")


def worker_client_id(
    role: str,
    *,
    explicit: str = "",
    instance: str = "",
    hostname: str | None = None,
    pid: int | None = None,
) -> str:
    """The client id for a process of `role` (e.g. "worker"), following the rules above."""
    if explicit:
        return explicit
    host = _UNSAFE.sub("-", hostname if hostname is not None else socket.gethostname()) or "host"
    suffix = _UNSAFE.sub("-", instance) if instance else f"p{pid if pid is not None else os.getpid()}"
    prefix = f"edgeline-{role}-"
    room = MAX_LENGTH - len(prefix) - len(suffix) - 1
    return f"{prefix}{host[: max(room, 1)]}-{suffix}"[:MAX_LENGTH]


def takeover_message(client_id: str, broker: str) -> str:
    """The one line for a process whose session another process took over (a real id collision)."""
    return (
        f"another MQTT client connected to {broker} with this process's client id {client_id!r} "
        "(session taken over): give every process its own id — setting client_id (EDGELINE_CLIENT_ID, "
        "--client-id) or instance (EDGELINE_INSTANCE, --instance N)"
    )
