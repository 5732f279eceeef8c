"""Framing layer of the device line protocol: CRC'd ASCII lines, %-escaped fields, limits, errors.

Responsible for: `<payload>*<CRC16>\n` frames, the field encodings shared by all messages, the
protocol's size limits and error codes, and its `ParseError`. Pure code only.
Not responsible for: the command set (see `stations.drivers.line_protocol.protocol`), I/O or retries
(`stations.drivers.line_protocol.driver`).
"""

from __future__ import annotations

import binascii
import re
from enum import IntEnum

from stations import errors
from stations.line_buffer import MAX_LINE_BYTES

# A DATA line is `SS D <offset> <chunk>*CCCC\n`: with a 10-digit offset, 1000 encoded characters of
# chunk keep it within MAX_LINE_BYTES (5 + 11 + 1000 + 6 = 1022). Big chunks mean few line headers.
DATA_FIELD_CHARS = 1000  # encoded characters of one DATA chunk
MAX_CHUNK_BYTES = DATA_FIELD_CHARS  # decoded bytes per DATA line (each byte encodes to >= 1 character)
WINDOW = 4  # requests a station may have in flight; a device must buffer this many lines

SEQ_RE = re.compile(r"[0-9A-F]{2}")
_NUM_RE = re.compile(r"0|[1-9][0-9]{0,9}")
_SHA_RE = re.compile(r"[0-9a-f]{64}")
NAME_RE = re.compile(r"[A-Z][A-Z_]{0,31}")
_PLAIN = frozenset(range(0x21, 0x7F)) - {ord("%")}


def _last_field_code(byte: int) -> str:
    if byte == 0x0A:
        return "~"
    if (byte in _PLAIN or byte == 0x20) and byte != ord("~"):
        return chr(byte)
    return f"%{byte:02X}"


_LAST_FIELD_CODES = [_last_field_code(b) for b in range(256)]


class ErrorCode(IntEnum):
    """Numeric error codes of `E` replies; the name is sent next to the number."""

    BAD_REQUEST = 1
    UNKNOWN_COMMAND = 2
    CHECKSUM = 3
    HASH_MISMATCH = 4
    NO_SPACE = 5
    NO_TRANSFER = 6
    BAD_OFFSET = 7
    BAD_PATH = 8
    NOT_FOUND = 9
    TOO_LONG = 10
    IO_ERROR = 11
    BUSY = 12


class ParseError(errors.ParseError):
    """A line that is not a valid frame/request/reply; `reason` says why, `code` what a device answers."""

    def __init__(self, reason: str, code: ErrorCode = ErrorCode.BAD_REQUEST, seq: int | None = None) -> None:
        super().__init__(reason)
        self.code = code
        self.seq = seq  # the request's seq when it could be read, so a device can address its error


# --- framing ------------------------------------------------------------------------------------


def crc16(data: bytes) -> int:
    """CRC-16/CCITT-FALSE (poly 0x1021, init 0xFFFF): "123456789" -> 0x29B1."""
    return binascii.crc_hqx(data, 0xFFFF)


def encode_frame(payload: str) -> bytes:
    """Frame a payload as `<payload>*<CRC16 4 hex>\\n`; refuses payloads that could not be parsed."""
    raw = payload.encode("ascii")
    if not raw or any(b < 0x20 or b > 0x7E for b in raw):
        raise ValueError("frame payload must be non-empty printable ASCII")
    line = raw + b"*%04X\n" % crc16(raw)
    if len(line) > MAX_LINE_BYTES:
        raise ValueError(f"frame is {len(line)} bytes; at most {MAX_LINE_BYTES} allowed")
    return line


def parse_frame(line: bytes) -> str:
    """Check length, characters and CRC of one line (with or without its newline); return the payload."""
    if len(line) > MAX_LINE_BYTES:
        raise ParseError(f"line is {len(line)} bytes; at most {MAX_LINE_BYTES} allowed", ErrorCode.TOO_LONG)
    body = line.removesuffix(b"\n").removesuffix(b"\r")
    if not body:
        raise ParseError("empty line")
    for position, byte in enumerate(body):
        if byte < 0x20 or byte > 0x7E:
            raise ParseError(f"byte 0x{byte:02X} at position {position + 1} is not printable ASCII")
    if len(body) < 6 or body[-5:-4] != b"*":
        raise ParseError("no '*XXXX' checksum at the end of the line", ErrorCode.CHECKSUM)
    payload, sent = body[:-5], body[-4:].decode("ascii")
    if not re.fullmatch(r"[0-9A-F]{4}", sent):
        raise ParseError(f"checksum {sent!r} is not 4 uppercase hex digits", ErrorCode.CHECKSUM)
    computed = crc16(payload)
    if int(sent, 16) != computed:
        raise ParseError(f"bad checksum: line says {sent}, content gives {computed:04X}", ErrorCode.CHECKSUM)
    return payload.decode("ascii")


# --- field encoding -----------------------------------------------------------------------------


def escape(data: bytes, *, last_field: bool = False) -> str:
    """%-escape bytes: printable ASCII except '%' stays literal, the rest becomes `%XX`.

    In the last field of a line (DATA chunks, error details) space is literal and LF is `~` (and
    `~` is `%7E`): text configs are ~4% LF and ~8% space, so this keeps them near 1 byte per byte.
    """
    if not last_field:
        return "".join(chr(b) if b in _PLAIN else f"%{b:02X}" for b in data)
    return "".join(_LAST_FIELD_CODES[b] for b in data)


def split_data(content: bytes, budget: int = DATA_FIELD_CHARS) -> list[tuple[int, bytes]]:
    """Cut `content` into (offset, chunk) pieces whose last-field encoding is at most `budget` chars."""
    pieces: list[tuple[int, bytes]] = []
    start = used = 0
    for index, byte in enumerate(content):
        cost = len(_LAST_FIELD_CODES[byte])
        if used + cost > budget:
            pieces.append((start, content[start:index]))
            start, used = index, 0
        used += cost
    if start < len(content):
        pieces.append((start, content[start:]))
    return pieces


def unescape(text: str, *, last_field: bool = False) -> bytes:
    """Reverse `escape`; strict: '%' must be followed by two uppercase hex digits."""
    out = bytearray()
    i = 0
    while i < len(text):
        char = text[i]
        if char != "%":
            if not " " <= char <= "~":  # a frame is printable ASCII: anything else is not our escaping
                raise ParseError(f"character {char!r} at position {i + 1} is not printable ASCII")
            out.append(0x0A if last_field and char == "~" else ord(char))
            i += 1
            continue
        pair = text[i + 1 : i + 3]
        if not re.fullmatch(r"[0-9A-F]{2}", pair):
            raise ParseError(f"bad escape {text[i : i + 3]!r} at position {i + 1}")
        out.append(int(pair, 16))
        i += 3
    return bytes(out)


def parse_text(field: str, what: str) -> str:
    """Decode a non-empty %-escaped UTF-8 text field; `what` names it in errors."""
    if not field:
        raise ParseError(f"{what} is empty")
    try:
        return unescape(field).decode("utf-8")
    except UnicodeDecodeError:
        raise ParseError(f"{what} is not valid UTF-8") from None


def parse_number(field: str, what: str) -> int:
    """Decode an unsigned decimal (no leading zeros, at most 10 digits)."""
    if not _NUM_RE.fullmatch(field):
        raise ParseError(f"{what} {field[:20]!r} is not a decimal number")
    return int(field)


def parse_sha(field: str) -> str:
    """Check a SHA-256 digest field: 64 lowercase hex digits."""
    if not _SHA_RE.fullmatch(field):
        raise ParseError(f"SHA-256 {field[:70]!r} is not 64 lowercase hex digits")
    return field


def encode_text(value: str, what: str) -> str:
    """Encode a non-empty text field (UTF-8, %-escaped, no spaces)."""
    if not value:
        raise ValueError(f"{what} must not be empty")
    return escape(value.encode("utf-8"))


def split_fields(rest: str, count: int, what: str) -> list[str]:
    """Split space-separated fields, insisting on exactly `count` of them."""
    parts = rest.split(" ") if rest else []
    if len(parts) != count:
        raise ParseError(f"{what} needs {count} field(s), got {len(parts)}")
    return parts
