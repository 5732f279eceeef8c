"""What simulated factory firmware does with each request: identity, chunked config writes, hashes.

Responsible for: the device side of docs/device-protocol.md as a state machine over one "flash"
directory (files stored under it mirroring device paths, written atomically with mode 0600), and
the storage-level faults (corrupted write, wrong read-back hash). Production code, used by
`stations.drivers.line_protocol.simulator`, demos and tests.
Not responsible for: the serial line, timing, or line-level faults (see
`stations.drivers.line_protocol.simulator`).
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from stations.drivers.line_protocol.framing import ErrorCode, ParseError
from stations.drivers.line_protocol.protocol import (
    AckReply,
    BeginRequest,
    CommitRequest,
    DataRequest,
    ErrorReply,
    HashReply,
    HashRequest,
    IdentifyRequest,
    IdentityReply,
    RebootRequest,
    Reply,
    Request,
    parse_request,
)

TMP_PREFIX = ".tmp-"


@dataclass
class Faults:
    """Switchable faults; change fields at any time, the device reads them per line."""

    noise: bool = False  # a line of random bytes before every reply
    drop_replies: int = 0  # swallow the next N replies
    duplicate_replies: bool = False  # send every reply twice
    corrupt_replies: int = 0  # damage the checksum of the next N replies
    latency_s: float = 0.0  # extra processing time before each reply (slow device)
    disconnect_after_chunks: int | None = None  # vanish (close the pty) on the Nth DATA line
    corrupt_write: bool = False  # stored bytes differ from the verified transfer
    wrong_hash: bool = False  # HASH reports a digest that is not the stored file's
    garbage: bool = False  # answer every line with noise only
    flood_bytes: int = 0  # once, before the next reply: a line this long (a device spewing a log dump)


class DeviceFailure(Exception):
    """Raised inside a handler to answer with an error reply."""

    def __init__(self, code: ErrorCode, detail: str = "") -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail


@dataclass
class _Transfer:
    path: str
    size: int
    sha256: str
    data: bytearray


class SimulatedFirmware:
    """Answer parsed requests like factory firmware would, storing files under `flash_dir`."""

    def __init__(
        self, identity: IdentityReply, flash_dir: Path, faults: Faults, *, max_file_bytes: int = 64 * 1024
    ) -> None:
        self.identity = identity
        self.flash_dir = flash_dir
        self.faults = faults
        self.max_file_bytes = max_file_bytes
        self.committed: Path | None = None
        self.reboot_requested = False
        self._transfer: _Transfer | None = None
        self._last: tuple[bytes, Reply] | None = None  # C/R answered again on an identical retry

    def handle_line(self, line: bytes) -> Reply:
        """Return the reply to one received line (never raises)."""
        try:
            request = parse_request(line)
        except ParseError as exc:
            return ErrorReply(exc.seq, exc.code, exc.code.name, exc.reason[:200])
        if self._last is not None and self._last[0] == line:
            return self._last[1]
        try:
            reply = self._execute(request)
        except DeviceFailure as exc:
            self._transfer = None  # any error aborts a transfer: the station restarts with BEGIN
            reply = ErrorReply(request.seq, exc.code, exc.code.name, exc.detail)
        self._last = (line, reply) if isinstance(request, CommitRequest | RebootRequest) else None
        return reply

    def _execute(self, request: Request) -> Reply:
        match request:
            case IdentifyRequest(seq=seq):
                return IdentityReply(seq, *self._identity_fields())
            case BeginRequest():
                return self._begin(request)
            case DataRequest():
                return self._data(request)
            case CommitRequest(seq=seq):
                path = self._commit()
                return self._hash(HashRequest(seq, path))  # re-read from flash, never the received bytes
            case HashRequest():
                return self._hash(request)
            case RebootRequest(seq=seq):
                self._transfer = None
                self.reboot_requested = True
                return AckReply(seq)

    def _identity_fields(self) -> tuple[str, str, str, str]:
        i = self.identity
        return i.serial, i.mac, i.model, i.firmware

    def host_path(self, device_path: str) -> Path:
        """Map an absolute device path to its file under `flash_dir`, refusing escapes."""
        pure = PurePosixPath(device_path)
        parts = pure.parts[1:]
        if not pure.is_absolute() or not parts or any(p in ("..", ".") or "\\" in p for p in parts):
            raise DeviceFailure(ErrorCode.BAD_PATH, f"{device_path[:64]} is not an absolute file path")
        return self.flash_dir.joinpath(*parts)

    def _begin(self, request: BeginRequest) -> Reply:
        self.host_path(request.path)
        if request.size > self.max_file_bytes:
            raise DeviceFailure(ErrorCode.NO_SPACE, f"{request.size} bytes > {self.max_file_bytes} free")
        self._transfer = _Transfer(request.path, request.size, request.sha256, bytearray())
        return AckReply(request.seq)

    def _data(self, request: DataRequest) -> Reply:
        transfer = self._transfer
        if transfer is None:
            raise DeviceFailure(ErrorCode.NO_TRANSFER, "DATA without BEGIN")
        end = request.offset + len(request.chunk)
        if request.offset == len(transfer.data) and end <= transfer.size:
            transfer.data += request.chunk
        elif end > len(transfer.data) or transfer.data[request.offset : end] != request.chunk:
            raise DeviceFailure(ErrorCode.BAD_OFFSET, f"offset {request.offset}, have {len(transfer.data)}")
        return AckReply(request.seq)

    def _commit(self) -> str:
        """Verify and store the transfer; return the device path written."""
        transfer, self._transfer = self._transfer, None
        if transfer is None:
            raise DeviceFailure(ErrorCode.NO_TRANSFER, "COMMIT without BEGIN")
        if len(transfer.data) != transfer.size:
            raise DeviceFailure(ErrorCode.BAD_OFFSET, f"got {len(transfer.data)} of {transfer.size} bytes")
        if hashlib.sha256(transfer.data).hexdigest() != transfer.sha256:
            raise DeviceFailure(ErrorCode.HASH_MISMATCH, "received data does not match BEGIN's SHA-256")
        data = bytes(transfer.data)
        if self.faults.corrupt_write and data:
            data = bytes([data[0] ^ 0x01]) + data[1:]
        target = self.host_path(transfer.path)
        try:
            write_atomically(target, data)
        except OSError as exc:
            raise DeviceFailure(ErrorCode.IO_ERROR, exc.strerror or "write failed") from None
        self.committed = target
        return transfer.path

    def _hash(self, request: HashRequest) -> Reply:
        target = self.host_path(request.path)
        try:
            stored = target.read_bytes()
        except FileNotFoundError:
            raise DeviceFailure(ErrorCode.NOT_FOUND, request.path[:64]) from None
        digest = hashlib.sha256(stored + (b"!" if self.faults.wrong_hash else b"")).hexdigest()
        return HashReply(request.seq, digest, len(stored))


def write_atomically(target: Path, data: bytes) -> None:
    """Write `data` to `target` via a 0600 temp file in the same directory, fsync, rename."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f"{TMP_PREFIX}{target.name}.{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
