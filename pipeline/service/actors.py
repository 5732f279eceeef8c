"""Who did it: the audit actor of every record names a real party, not just a role.

Responsible for: the identity strings written in the audit's `actor` column — a central worker
instance (`<role>@worker:<host>:<pid>`), an operator at the command line (`cli:<user>@<host>`), or a
station and its port (`station:<station>:<port>`) for what a station reported.
Not responsible for: authentication (the broker's ACLs and the OS say who may act at all).
"""

from __future__ import annotations

import getpass
import os
import socket

MAX_ACTOR = 128  # the audit_log.actor column


def worker_identity() -> str:
    """This process as a central worker: host and process id (several workers may share a host)."""
    return f"worker:{socket.gethostname()}:{os.getpid()}"


def cli_identity() -> str:
    """This process as an operator's command: the OS user and host."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no passwd entry and no LOGNAME/USER (some containers)
        user = f"uid{os.getuid()}" if hasattr(os, "getuid") else "unknown"
    return f"cli:{user}@{socket.gethostname()}"


def station_actor(station: str, port: str | None = None) -> str:
    """The actor of something a station reported: the station and, when known, the port (fixture)."""
    return (f"station:{station}:{port}" if port else f"station:{station}")[:MAX_ACTOR]


def qualified(actor: str, instance: str) -> str:
    """The actor to record: an explicit identity as is, an operator's command as the CLI identity,
    else the worker role with the instance that ran it (e.g. `keyer@worker:host-1:4242`)."""
    if actor.startswith(("station:", "cli:")):
        return actor[:MAX_ACTOR]
    if instance.startswith("cli:"):
        return instance[:MAX_ACTOR]
    return f"{actor}@{instance}"[:MAX_ACTOR]
