"""Pure tests of the device line protocol: golden lines, rejections with reasons, properties."""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stations.drivers.line_protocol.framing import (
    MAX_CHUNK_BYTES,
    ErrorCode,
    ParseError,
    crc16,
    encode_frame,
    escape,
    parse_frame,
    unescape,
)
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
    encode_reply,
    encode_request,
    parse_reply,
    parse_request,
)
from stations.line_buffer import MAX_LINE_BYTES, LineBuffer

SHA = "4159758e01ea9a6f6f0a35aec2ec8a8b27b5e4a10a2f1e1cd6b0e9a5e0a3a7c1"

REQUESTS: list[tuple[bytes, Request]] = [
    (b"01 I*85B7\n", IdentifyRequest(1)),
    (
        b"2A B /etc/aziot/config.toml 1041 " + SHA.encode() + b"*4B10\n",
        BeginRequest(42, "/etc/aziot/config.toml", 1041, SHA),
    ),
    (
        b'2B D 0 [provisioning]~source = "dps"~*1E22\n',
        DataRequest(43, 0, b'[provisioning]\nsource = "dps"\n'),
    ),
    (b"2C D 256 100%25 %7E %09%00*BEC6\n", DataRequest(44, 256, b"100% ~ \t\x00")),
    (b"2D C*FA6D\n", CommitRequest(45)),
    (b"2E H /etc/aziot/config.toml*7A7C\n", HashRequest(46, "/etc/aziot/config.toml")),
    (b"FF R*1E99\n", RebootRequest(255)),
]

REPLIES: list[tuple[bytes, Reply]] = [
    (b"2B OK*B80E\n", AckReply(43)),
    (
        b"01 I 007-888-ABC A1:B2:C3:D4:E5:F6 EdgeGW%20200 1.4.2*BEC3\n",
        IdentityReply(1, "007-888-ABC", "A1:B2:C3:D4:E5:F6", "EdgeGW 200", "1.4.2"),
    ),
    (b"2E H " + SHA.encode() + b" 1041*F236\n", HashReply(46, SHA, 1041)),
    (b"-- E 3 CHECKSUM bad checksum*C67A\n", ErrorReply(None, 3, "CHECKSUM", "bad checksum")),
    (b"2D E 4 HASH_MISMATCH*7D0E\n", ErrorReply(45, 4, "HASH_MISMATCH")),
    (
        b"2A E 5 NO_SPACE 70000 bytes > 65536 free*4A89\n",
        ErrorReply(42, 5, "NO_SPACE", "70000 bytes > 65536 free"),
    ),
]


def framed(payload: str) -> bytes:
    return encode_frame(payload)


def test_crc_is_ccitt_false() -> None:
    assert crc16(b"123456789") == 0x29B1


@pytest.mark.parametrize(("line", "request_"), REQUESTS)
def test_captured_requests_parse_and_encode(line: bytes, request_: Request) -> None:
    assert parse_request(line) == request_
    assert encode_request(request_) == line


@pytest.mark.parametrize(("line", "reply"), REPLIES)
def test_captured_replies_parse_and_encode(line: bytes, reply: Reply) -> None:
    assert parse_reply(line) == reply
    assert encode_reply(reply) == line


def test_crlf_line_ending_is_accepted() -> None:
    assert parse_reply(b"2B OK*B80E\r\n") == AckReply(43)


BAD_REQUESTS: list[tuple[bytes, str, ErrorCode, int | None]] = [
    (b"", "empty line", ErrorCode.BAD_REQUEST, None),
    (b"\n", "empty line", ErrorCode.BAD_REQUEST, None),
    (b"01 I*0000\n", "bad checksum", ErrorCode.CHECKSUM, None),
    (b"01 I*85b7\n", "4 uppercase hex", ErrorCode.CHECKSUM, None),
    (b"01 I\n", "no '*XXXX' checksum", ErrorCode.CHECKSUM, None),
    (b"\xff\xfe\x00garbage*1234\n", "0xFF at position 1 is not printable", ErrorCode.BAD_REQUEST, None),
    (b"A" * (MAX_LINE_BYTES + 1), "at most 1024", ErrorCode.TOO_LONG, None),
    (framed("1 I"), "sequence number", ErrorCode.BAD_REQUEST, None),
    (framed("01 Z"), "unknown command 'Z'", ErrorCode.UNKNOWN_COMMAND, 1),
    (framed("01 I extra"), "needs 0 field(s)", ErrorCode.BAD_REQUEST, 1),
    (framed("02 B /x 10 nothex"), "SHA-256", ErrorCode.BAD_REQUEST, 2),
    (framed("02 B /x -1 " + SHA), "not a decimal number", ErrorCode.BAD_REQUEST, 2),
    (framed("03 D 00 x"), "offset '00' is not a decimal number", ErrorCode.BAD_REQUEST, 3),
    (framed("03 D 0 "), "chunk is 0 bytes", ErrorCode.BAD_REQUEST, 3),
    (framed("03 D 0 %4"), "bad escape", ErrorCode.BAD_REQUEST, 3),
    (
        framed("03 D 0 " + "x" * (MAX_CHUNK_BYTES + 1)),
        f"chunk is {MAX_CHUNK_BYTES + 1} bytes",
        ErrorCode.BAD_REQUEST,
        3,
    ),
    (framed("04 H"), "needs 1 field(s)", ErrorCode.BAD_REQUEST, 4),
    (framed("04 H %FF"), "not valid UTF-8", ErrorCode.BAD_REQUEST, 4),
]


@pytest.mark.parametrize(("line", "reason", "code", "seq"), BAD_REQUESTS)
def test_bad_requests_are_rejected_with_reason(
    line: bytes, reason: str, code: ErrorCode, seq: int | None
) -> None:
    with pytest.raises(ParseError) as caught:
        parse_request(line)
    assert reason in caught.value.reason
    assert (caught.value.code, caught.value.seq) == (code, seq)


BAD_REPLIES: list[tuple[bytes, str]] = [
    (framed("01 OK extra"), "unknown reply"),
    (framed("01 YES"), "unknown reply 'YES'"),
    (framed("-- OK"), "sequence number"),
    (framed("01 E x CHECKSUM"), "error code"),
    (framed("01 E 3 checksum"), "error name"),
    (framed("01 H abc 1"), "SHA-256"),
    (framed("01 I a b c"), "needs 4 field(s)"),
    (b"01 OK*2525\n", "bad checksum"),
    (b"\x00\x13\xfe\n", "not printable"),
]


@pytest.mark.parametrize(("line", "reason"), BAD_REPLIES)
def test_bad_replies_are_rejected_with_reason(line: bytes, reason: str) -> None:
    with pytest.raises(ParseError, match=reason.replace("(", r"\(").replace(")", r"\)")):
        parse_reply(line)


def test_encoders_refuse_what_could_not_be_parsed() -> None:
    with pytest.raises(ValueError, match="chunk"):
        encode_request(DataRequest(1, 0, b""))
    with pytest.raises(ValueError, match="must not be empty"):
        encode_reply(IdentityReply(1, "", "m", "m", "f"))
    with pytest.raises(ValueError, match="at most 1024"):
        encode_frame("x" * MAX_LINE_BYTES)
    with pytest.raises(ValueError, match="non-empty"):
        encode_frame("")


# --- properties ---------------------------------------------------------------------------------

texts = st.text(st.characters(exclude_categories=["Cs"]), min_size=1, max_size=15)
seqs = st.integers(0, 255)
numbers = st.integers(0, 9_999_999_999)
shas = st.text("0123456789abcdef", min_size=64, max_size=64)

requests = st.one_of(
    st.builds(IdentifyRequest, seqs),
    st.builds(BeginRequest, seqs, texts, numbers, shas),
    st.builds(DataRequest, seqs, numbers, st.binary(min_size=1, max_size=MAX_CHUNK_BYTES)),
    st.builds(CommitRequest, seqs),
    st.builds(HashRequest, seqs, texts),
    st.builds(RebootRequest, seqs),
)
replies = st.one_of(
    st.builds(AckReply, seqs),
    st.builds(IdentityReply, seqs, texts, texts, texts, texts),
    st.builds(HashReply, seqs, shas, numbers),
    st.builds(
        ErrorReply,
        st.none() | seqs,
        numbers,
        st.from_regex(r"\A[A-Z][A-Z_]{0,31}\Z"),
        st.text(st.characters(exclude_categories=["Cs"]), max_size=40),
    ),
)


@given(requests)
def test_requests_round_trip(request_: Request) -> None:
    line = encode_request(request_)
    assert len(line) <= MAX_LINE_BYTES
    assert parse_request(line) == request_


@given(replies)
def test_replies_round_trip(reply: Reply) -> None:
    assert parse_reply(encode_reply(reply)) == reply


@given(st.binary(max_size=MAX_LINE_BYTES + 50))
def test_arbitrary_bytes_raise_only_parse_error(data: bytes) -> None:
    for parse in (parse_request, parse_reply):
        with contextlib.suppress(ParseError):
            parse(data)


@given(st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), min_size=1, max_size=300))
def test_arbitrary_well_framed_payloads_raise_only_parse_error(payload: str) -> None:
    line = framed(payload)
    assert parse_frame(line) == payload
    for parse in (parse_request, parse_reply):
        with contextlib.suppress(ParseError):
            parse(line)


@given(st.binary(max_size=300), st.booleans())
def test_escape_round_trips_and_stays_on_one_field(data: bytes, last_field: bool) -> None:
    text = escape(data, last_field=last_field)
    assert unescape(text, last_field=last_field) == data
    assert "\n" not in text and "\r" not in text
    if not last_field:
        assert " " not in text


# --- line splitting -----------------------------------------------------------------------------


def test_line_buffer_splits_and_bounds_lines() -> None:
    buffer = LineBuffer(max_line=8)
    buffer.feed(b"ab\ncd")
    assert buffer.pop_line() == b"ab\n"
    assert buffer.pop_line() is None
    buffer.feed(b"efghijklmnop\nok\n")
    overlong = buffer.pop_line()
    assert overlong == b"cdefghijk"  # max_line + 1 bytes: the parser rejects it as too long
    assert buffer.pop_line() == b"ok\n"  # the rest of the overlong line was skipped
    assert buffer.pop_line() is None


# --- the spec's examples are real lines ---------------------------------------------------------

SPEC = Path(__file__).resolve().parents[2] / "docs" / "device-protocol.md"


def test_every_example_line_in_the_spec_parses() -> None:
    lines = [line for line in SPEC.read_text().splitlines() if line.startswith(("> ", "< "))]
    assert len(lines) >= 14
    for line in lines:
        parse = parse_request if line.startswith(">") else parse_reply
        parse(line[2:].encode() + b"\n")
