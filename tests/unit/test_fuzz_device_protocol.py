"""Fuzz the station side of the device protocol: framing, requests, replies and console output parsing.

Whatever a device sends, the parsers either return a value or raise `ParseError` with a reason a
person can read; nothing else escapes.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from stations.drivers.line_protocol.framing import ParseError, encode_frame, parse_frame, unescape
from stations.drivers.line_protocol.protocol import parse_reply, parse_request
from stations.drivers.linux_console.parsing import (
    is_noise,
    login_rejected,
    parse_framed,
    parse_sha256sum,
    pretty_name,
    prompt_state,
    single_value,
)
from stations.line_buffer import MAX_LINE_BYTES, LineBuffer

FUZZ = settings(max_examples=300, deadline=None)
# Lines shaped like the protocol (seq, command, fields, checksum) reach deeper than random bytes.
WORDS = st.sampled_from(["ID", "BEGIN", "DATA", "COMMIT", "HASH", "REBOOT", "OK", "ERR", "IDENT", "00", "7F"])
shaped = st.lists(st.one_of(WORDS, st.text(max_size=20)), max_size=6).map(lambda parts: " ".join(parts))


def _rejects_with_reason(parse: object, line: bytes) -> None:
    try:
        parse(line)  # type: ignore[operator]
    except ParseError as exc:
        assert exc.reason.strip(), f"rejection of {line!r} has no reason"


@FUZZ
@given(st.binary(max_size=MAX_LINE_BYTES + 64))
def test_frames_of_random_bytes(line: bytes) -> None:
    _rejects_with_reason(parse_frame, line)


@FUZZ
@given(shaped)
def test_requests_and_replies_with_valid_checksums(text: str) -> None:
    try:
        line = encode_frame(text)
    except ValueError:
        return  # not printable ASCII, or too long: the encoder refuses to build it
    _rejects_with_reason(parse_request, line)
    _rejects_with_reason(parse_reply, line)


@FUZZ
@given(st.binary(max_size=600))
def test_requests_and_replies_of_random_bytes(line: bytes) -> None:
    _rejects_with_reason(parse_request, line)
    _rejects_with_reason(parse_reply, line)


@FUZZ
@given(st.text(max_size=200), st.booleans())
def test_unescape(text: str, last_field: bool) -> None:
    try:
        unescape(text, last_field=last_field)
    except ParseError as exc:
        assert exc.reason.strip()


@FUZZ
@given(st.lists(st.binary(max_size=300), max_size=20))
def test_line_buffer_never_returns_an_overlong_line(chunks: list[bytes]) -> None:
    buffer = LineBuffer(max_line=128)
    for chunk in chunks:
        buffer.feed(chunk)
        while (line := buffer.pop_line()) is not None:
            assert len(line) <= 129


@FUZZ
@given(st.text(max_size=400), st.sampled_from(["T1", "abc9"]))
def test_console_output(text: str, tag: str) -> None:
    prompt_state(text)
    login_rejected(text)
    for line in text.splitlines():
        is_noise(line)
    try:
        result = parse_framed(text, tag)
        if result is not None:
            single_value(result, "a value")
            parse_sha256sum(result, "/etc/aziot/config.toml")
            pretty_name(result)
    except ParseError as exc:
        assert exc.reason.strip()
