"""The device driver: the only code that knows the factory firmware's command set.

Responsible for: `LineProtocolDriver` (a `stations.drivers.port.DeviceDriver`), which
identifies a device, writes a config in pipelined chunks and proves it by reading back the stored
file's SHA-256, and reboots it. One command at a time (a lock), bounded retries, typed errors.
Not responsible for: parsing identities into registration IDs (`pipeline.domain.identity`), bytes on
the wire (`stations.drivers.line_protocol.protocol`), or seq/timeout/resync mechanics
(`stations.drivers.line_protocol.connection`).

Invariant: `write_config` returns only a read-back hash reported by the device for the stored file
that equals the SHA-256 of the content it was asked to write. Anything else is a `FlashError`.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable
from typing import TypeVar

from stations.drivers.line_protocol.connection import Connection
from stations.drivers.line_protocol.framing import WINDOW, ErrorCode, split_data
from stations.drivers.line_protocol.protocol import (
    AckReply,
    BeginRequest,
    CommitRequest,
    DataRequest,
    HashReply,
    IdentifyRequest,
    IdentityReply,
    RebootRequest,
    Reply,
    Request,
)
from stations.drivers.port import DeviceDriver, DeviceInfo
from stations.errors import (
    ErrorResponse,
    FlashError,
    FlashInterrupted,
    NoResponse,
    PortVanished,
    StationError,
)
from stations.link import PySerialLink, SerialLink

_R = TypeVar("_R", AckReply, IdentityReply, HashReply)

# Errors a fresh attempt can cure (line noise corrupted the transfer, device briefly busy).
RETRYABLE_CODES = frozenset(
    {
        ErrorCode.CHECKSUM,
        ErrorCode.HASH_MISMATCH,
        ErrorCode.NO_TRANSFER,
        ErrorCode.BAD_OFFSET,
        ErrorCode.IO_ERROR,
        ErrorCode.BUSY,
    }
)


class LineProtocolDriver(DeviceDriver):
    """`DeviceDriver` speaking docs/device-protocol.md over a `SerialLink`."""

    def __init__(
        self,
        link: SerialLink,
        *,
        reply_timeout: float = 1.0,
        retries: int = 3,
        flash_attempts: int = 3,
        window: int = WINDOW,
    ) -> None:
        self._conn = Connection(link, reply_timeout=reply_timeout, retries=retries, window=window)
        self._flash_attempts = max(1, flash_attempts)
        self._lock = threading.Lock()

    def identify(self) -> DeviceInfo:
        with self._lock:
            self._conn.link.reset_input()
            reply = _expect(self._conn.call(IdentifyRequest), IdentityReply, "Identify")
            return DeviceInfo(reply.serial, reply.mac, reply.model, reply.firmware)

    def reboot(self) -> None:
        with self._lock:
            self._conn.link.reset_input()
            _expect(self._conn.call(RebootRequest), AckReply, "Reboot")

    def close(self) -> None:
        with self._lock:
            self._conn.link.close()

    def write_config(self, path: str, content: bytes) -> str:
        expected = hashlib.sha256(content).hexdigest()
        with self._lock:
            problem = "no attempt made"
            for _ in range(self._flash_attempts):
                stored, problem = self._attempt(path, content, expected)
                if stored is not None:
                    return stored
            raise FlashError(
                f"could not write and verify {path} in {self._flash_attempts} attempts; last: {problem}",
                retryable=True,
            )

    def _attempt(self, path: str, content: bytes, expected: str) -> tuple[str | None, str]:
        """One write: (verified read-back SHA-256, "") on success, (None, why) if a retry may help."""
        try:
            stored = self._transfer(path, content, expected)
        except PortVanished as exc:
            raise FlashInterrupted(f"device disconnected while flashing {path}: {exc}") from exc
        except ErrorResponse as exc:
            if exc.code not in RETRYABLE_CODES:
                raise FlashError(f"cannot flash {path}: {exc}", retryable=False) from exc
            return None, str(exc)
        except NoResponse as exc:
            return None, str(exc)
        if stored.sha256 == expected and stored.size == len(content):
            return stored.sha256, ""
        return None, (
            f"read-back of {path} gives SHA-256 {stored.sha256[:16]}... ({stored.size} bytes), "
            f"expected {expected[:16]}... ({len(content)} bytes)"
        )

    def _transfer(self, path: str, content: bytes, expected: str) -> HashReply:
        """One attempt: BEGIN, DATA..., COMMIT pipelined; return COMMIT's read-back of the stored file."""
        self._conn.link.reset_input()
        seq = self._conn.next_seq
        requests: list[Request] = [BeginRequest(seq(), path, len(content), expected)]
        requests += [DataRequest(seq(), offset, chunk) for offset, chunk in split_data(content)]
        requests.append(CommitRequest(seq()))
        replies = self._conn.stream(requests)
        for reply in replies[:-1]:
            _expect(reply, AckReply, "flash step")
        return _expect(replies[-1], HashReply, "Commit")


def _expect(reply: Reply, kind: type[_R], command: str) -> _R:
    if not isinstance(reply, kind):
        raise NoResponse(f"device answered {command} with an unexpected {type(reply).__name__}")
    return reply


__all__ = [
    "DeviceDriver",
    "DeviceInfo",
    "ErrorResponse",
    "FlashError",
    "FlashInterrupted",
    "LineProtocolDriver",
    "NoResponse",
    "StationError",
]


def line_protocol_driver(baudrate: int) -> Callable[[str], DeviceDriver]:
    """Driver factory (entry point `line-protocol`): open the port with pyserial, speak the line protocol."""

    def open_driver(port: str) -> DeviceDriver:
        return LineProtocolDriver(PySerialLink(port, baudrate=baudrate))

    return open_driver
