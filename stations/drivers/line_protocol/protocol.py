"""edgeline's station <-> factory-firmware line protocol: typed messages and their codecs.

Responsible for: turning typed requests and replies into checksummed ASCII lines and back, and
rejecting anything else with a `ParseError` that says why (docs/device-protocol.md is the spec).
Not responsible for: I/O, timeouts, retries or sequencing policy (see
`stations.drivers.line_protocol.driver`), nor for what a device does with a request (see
`stations.drivers.line_protocol.simulator`). Nothing here touches a port.

Device input is untrusted (architecture §7): every parser bounds the line length, checks the character
set and the CRC before looking at fields, and raises only `ParseError`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from stations.drivers.line_protocol.framing import (
    MAX_CHUNK_BYTES,
    NAME_RE,
    SEQ_RE,
    ErrorCode,
    ParseError,
    encode_frame,
    encode_text,
    escape,
    parse_frame,
    parse_number,
    parse_sha,
    parse_text,
    split_fields,
    unescape,
)

__all__ = [
    "AckReply",
    "BeginRequest",
    "CommitRequest",
    "DataRequest",
    "ErrorCode",
    "ErrorReply",
    "HashReply",
    "HashRequest",
    "IdentifyRequest",
    "IdentityReply",
    "ParseError",
    "RebootRequest",
    "Reply",
    "Request",
    "encode_frame",
    "encode_reply",
    "encode_request",
    "parse_frame",
    "parse_reply",
    "parse_request",
]

# --- typed messages -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class IdentifyRequest:
    """`I`: ask for serial, MAC, model and firmware."""

    seq: int


@dataclass(frozen=True, slots=True)
class BeginRequest:
    """`B`: start writing `size` bytes whose SHA-256 is `sha256` to absolute `path`."""

    seq: int
    path: str
    size: int
    sha256: str


@dataclass(frozen=True, slots=True)
class DataRequest:
    """`D`: 1-1000 bytes of the file at `offset` (encoded, the line must still fit 1024 bytes)."""

    seq: int
    offset: int
    chunk: bytes


@dataclass(frozen=True, slots=True)
class CommitRequest:
    """`C`: verify the received file against BEGIN's size and SHA-256, store it atomically.

    The device answers with a `HashReply` of the file as stored (re-read after the write).
    """

    seq: int


@dataclass(frozen=True, slots=True)
class HashRequest:
    """`H`: report SHA-256 and size of the file at `path` as stored."""

    seq: int
    path: str


@dataclass(frozen=True, slots=True)
class RebootRequest:
    """`R`: reboot into the committed config."""

    seq: int


Request = IdentifyRequest | BeginRequest | DataRequest | CommitRequest | HashRequest | RebootRequest


@dataclass(frozen=True, slots=True)
class AckReply:
    """`OK`: the request was carried out."""

    seq: int


@dataclass(frozen=True, slots=True)
class IdentityReply:
    """`I`: what the device says it is, raw."""

    seq: int
    serial: str
    mac: str
    model: str
    firmware: str


@dataclass(frozen=True, slots=True)
class HashReply:
    """`H`: SHA-256 and size of a stored file (the reply to both `H` and `C`)."""

    seq: int
    sha256: str
    size: int


@dataclass(frozen=True, slots=True)
class ErrorReply:
    """`E`: the request failed; `seq` is None when the device could not read the line."""

    seq: int | None
    code: int
    name: str
    detail: str = ""


Reply = AckReply | IdentityReply | HashReply | ErrorReply


# --- requests -----------------------------------------------------------------------------------


def encode_request(request: Request) -> bytes:
    """Encode one request as a framed line."""
    seq = f"{request.seq:02X}"
    match request:
        case IdentifyRequest():
            payload = f"{seq} I"
        case BeginRequest(path=path, size=size, sha256=sha):
            payload = f"{seq} B {encode_text(path, 'path')} {size} {sha}"
        case DataRequest(offset=offset, chunk=chunk):
            if not 0 < len(chunk) <= MAX_CHUNK_BYTES:
                raise ValueError(f"DATA chunk must be 1..{MAX_CHUNK_BYTES} bytes, got {len(chunk)}")
            payload = f"{seq} D {offset} {escape(chunk, last_field=True)}"
        case CommitRequest():
            payload = f"{seq} C"
        case HashRequest(path=path):
            payload = f"{seq} H {encode_text(path, 'path')}"
        case RebootRequest():
            payload = f"{seq} R"
    return encode_frame(payload)


def _parse_begin(seq: int, rest: str) -> Request:
    path, size, sha = split_fields(rest, 3, "B (begin)")
    return BeginRequest(seq, parse_text(path, "path"), parse_number(size, "size"), parse_sha(sha))


def _parse_data(seq: int, rest: str) -> Request:
    offset, _, data = rest.partition(" ")
    chunk = unescape(data, last_field=True)
    if not 0 < len(chunk) <= MAX_CHUNK_BYTES:
        raise ParseError(f"DATA chunk is {len(chunk)} bytes; 1..{MAX_CHUNK_BYTES} allowed")
    return DataRequest(seq, parse_number(offset, "offset"), chunk)


def _parse_hash(seq: int, rest: str) -> Request:
    (path,) = split_fields(rest, 1, "H (hash)")
    return HashRequest(seq, parse_text(path, "path"))


def _no_args(cls: Callable[[int], Request], name: str) -> Callable[[int, str], Request]:
    def parse(seq: int, rest: str) -> Request:
        split_fields(rest, 0, name)
        return cls(seq)

    return parse


_REQUEST_PARSERS: dict[str, Callable[[int, str], Request]] = {
    "I": _no_args(IdentifyRequest, "I (identify)"),
    "B": _parse_begin,
    "D": _parse_data,
    "C": _no_args(CommitRequest, "C (commit)"),
    "H": _parse_hash,
    "R": _no_args(RebootRequest, "R (reboot)"),
}


def parse_request(line: bytes) -> Request:
    """Parse one line sent by a station; `ParseError.seq` is set whenever the seq was readable."""
    payload = parse_frame(line)
    seq_text, _, rest = payload.partition(" ")
    if not SEQ_RE.fullmatch(seq_text):
        raise ParseError(f"sequence number {seq_text[:8]!r} is not 2 uppercase hex digits")
    seq = int(seq_text, 16)
    command, _, args = rest.partition(" ")
    parser = _REQUEST_PARSERS.get(command)
    try:
        if parser is None:
            raise ParseError(f"unknown command {command[:8]!r}", ErrorCode.UNKNOWN_COMMAND)
        return parser(seq, args)
    except ParseError as exc:
        raise ParseError(exc.reason, exc.code, seq) from None


# --- replies ------------------------------------------------------------------------------------


def encode_reply(reply: Reply) -> bytes:
    """Encode one reply as a framed line."""
    seq = "--" if reply.seq is None else f"{reply.seq:02X}"
    match reply:
        case AckReply():
            payload = f"{seq} OK"
        case IdentityReply(serial=serial, mac=mac, model=model, firmware=fw):
            fields = [
                encode_text(v, w) for v, w in ((serial, "serial"), (mac, "mac"), (model, "model"), (fw, "fw"))
            ]
            payload = f"{seq} I {' '.join(fields)}"
        case HashReply(sha256=sha, size=size):
            payload = f"{seq} H {sha} {size}"
        case ErrorReply(code=code, name=name, detail=detail):
            payload = f"{seq} E {code} {name}" + (
                f" {escape(detail.encode(), last_field=True)}" if detail else ""
            )
    return encode_frame(payload)


_IDENTITY_FIELDS = ("serial", "mac", "model", "firmware")


def _parse_identity(seq: int, rest: str) -> Reply:
    fields = split_fields(rest, 4, "I reply")
    serial, mac, model, fw = (parse_text(f, w) for f, w in zip(fields, _IDENTITY_FIELDS, strict=True))
    return IdentityReply(seq, serial, mac, model, fw)


def _parse_hash_reply(seq: int, rest: str) -> Reply:
    sha, size = split_fields(rest, 2, "H reply")
    return HashReply(seq, parse_sha(sha), parse_number(size, "size"))


def _parse_error(seq: int | None, rest: str) -> Reply:
    code, _, rest = rest.partition(" ")
    name, _, detail = rest.partition(" ")
    if not NAME_RE.fullmatch(name):
        raise ParseError(f"error name {name[:32]!r} is not an upper-case word")
    try:
        text = unescape(detail, last_field=True).decode("utf-8")
    except UnicodeDecodeError:
        raise ParseError("error detail is not valid UTF-8") from None
    return ErrorReply(seq, parse_number(code, "error code"), name, text)


def parse_reply(line: bytes) -> Reply:
    """Parse one line sent by a device into a typed reply."""
    payload = parse_frame(line)
    seq_text, _, rest = payload.partition(" ")
    kind, _, args = rest.partition(" ")
    if seq_text == "--" and kind == "E":
        return _parse_error(None, args)
    if not SEQ_RE.fullmatch(seq_text):
        raise ParseError(f"sequence number {seq_text[:8]!r} is not 2 uppercase hex digits")
    seq = int(seq_text, 16)
    if kind == "OK" and not args and rest == "OK":
        return AckReply(seq)
    if kind == "I":
        return _parse_identity(seq, args)
    if kind == "H":
        return _parse_hash_reply(seq, args)
    if kind == "E":
        return _parse_error(seq, args)
    raise ParseError(f"unknown reply {rest[:16]!r}")
