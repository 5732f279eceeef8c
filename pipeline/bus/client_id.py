"""MQTT client ids for edgeline processes: unique per running instance, stable when asked to be.

Why this matters: the broker keys a persistent session by client id. Two processes with one id take
the session from each other over and over; a process replaced by one with another id leaves its
session (and the messages the broker keeps routing to it through the shared group) behind until the
session expires. So:
- an explicit id (setting client_id / EDGELINE_CLIENT_ID, or `--client-id`) is used as given;
- with an instance name (setting instance / EDGELINE_INSTANCE, or `--instance N`, e.g. systemd's `%i`)
  the id is `edgeline-<role>-<host>-<instance>`: stable across restarts, so a restarted instance takes
  back its own session (and, with a session expiry above 0, what was queued for it);
- otherwise the lowest free instance slot of this host (`claim_instance_slot`: a lock file per slot in
  the temp folder, released by the kernel when the process dies, even by SIGKILL), so N copies per host
  run side by side and a restarted copy takes back the id, and so the session, of the one it replaces;
- where slots cannot be locked, `edgeline-<role>-<host>-p<pid>`: unique, and a left-behind session
  expires after mqtt_session_expiry_seconds. Containers differ by hostname.
Not responsible for: connecting (pipeline.bus.paho).
"""

from __future__ import annotations

import os
import re
import socket
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

MAX_LENGTH = 64  # MQTT 3.1.1 only guarantees 23; Mosquitto, EMQX and HiveMQ accept far longer ids
_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")
_HELD: list[int] = []  # descriptors of claimed slots: open (and so locked) until the process ends


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


def claim_instance_slot(role: str, lock_dir: Path | None = None, limit: int = 64) -> str | None:
    """Lock the lowest free slot number for `role` on this host and return it ("1", "2", ...).

    None where file locks are unavailable (Windows) or every slot is taken; the caller then falls back
    to a pid-based id.
    """
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows: workers run on Linux, stations use their names
        return None
    folder = lock_dir or Path(tempfile.gettempdir()) / "edgeline-instances"
    try:
        folder.mkdir(exist_ok=True)
        folder.chmod(0o1777)  # shared by every user's workers on the host, like /tmp itself
    except OSError:
        pass  # someone else's folder: creating lock files in it is what matters
    for slot in range(1, limit + 1):
        try:
            fd = os.open(folder / f"{_UNSAFE.sub('-', role)}-{slot}.lock", os.O_RDWR | os.O_CREAT, 0o666)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            continue
        _HELD.append(fd)
        return str(slot)
    return None


def takeover_message(client_id: str, broker: str, evidence: str = "") -> str:
    """The one line for a process whose session another process took over (a real id collision)."""
    return (
        f"another MQTT client connected to {broker} with this process's client id {client_id!r} "
        f"(session taken over{evidence}): give every process its own id — setting client_id "
        "(EDGELINE_CLIENT_ID, --client-id) or instance (EDGELINE_INSTANCE, --instance N)"
    )


class TakeoverSuspicion:
    """Tells a client-id collision from a network problem when the broker does not say which it is.

    MQTT 5 brokers may send DISCONNECT 0x8E on a takeover; Mosquitto 2.0 (and every 3.1.1 broker) just
    closes the socket. Two processes with one id then take the session from each other in turn: each
    session dies within a second or two of coming up, and each reconnect succeeds at once. A network
    or broker outage looks different: connects fail in between. So `limit` sessions in a row that were
    lost within `short` seconds, with no failed connect between them, count as a takeover.
    """

    def __init__(self, limit: int = 3, short: float = 10.0, clock: Callable[[], float] = time.monotonic):
        self._limit, self._short, self._clock = limit, short, clock
        self._up_since: float | None = None
        self._count = 0

    def connected(self) -> None:
        self._up_since = self._clock()

    def connect_failed(self) -> None:
        self._count = 0

    def lost(self) -> bool:
        """Record a lost session; True when the pattern says another process uses the same id."""
        if self._up_since is None:
            return False
        lasted, self._up_since = self._clock() - self._up_since, None
        self._count = self._count + 1 if lasted < self._short else 0
        return self._count >= self._limit
