"""Request/response over a `SerialLink`: sequence numbers, timeouts, retries, resync, pipelining.

Responsible for: numbering requests, matching replies by seq (discarding stale and duplicated
ones), skipping garbage lines, resending a request on timeout or on a device NACK (`-- E ...`),
and keeping up to `WINDOW` requests in flight for bulk transfers.
Not responsible for: which commands exist or what their replies mean (see
`stations.drivers.line_protocol.driver`), nor for locking: the driver serialises calls. Never imports
pyserial.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Sequence

from stations.drivers.line_protocol.framing import WINDOW, ParseError
from stations.drivers.line_protocol.protocol import ErrorReply, Reply, Request, encode_request, parse_reply
from stations.errors import ErrorResponse, NoResponse
from stations.link import SerialLink

log = logging.getLogger(__name__)

_REPLY_ALLOWANCE = 128  # bytes: an identity or hash reply, with room to spare


def describe(request: Request) -> str:
    """Name a request for messages, e.g. `HashRequest` -> `Hash`."""
    return type(request).__name__.removesuffix("Request")


class Connection:
    """Numbered request/response exchanges with one device."""

    def __init__(
        self, link: SerialLink, *, reply_timeout: float = 1.0, retries: int = 3, window: int = WINDOW
    ) -> None:
        self.link = link
        self.reply_timeout = reply_timeout
        self.retries = retries
        self.window = max(1, min(window, WINDOW))
        self._seq = random.randrange(256)  # a fresh session must not look like the last one's retry

    def next_seq(self) -> int:
        """Allocate the next sequence number (2 hex digits on the wire, wrapping)."""
        self._seq = (self._seq + 1) % 256
        return self._seq

    def call(self, build: Callable[[int], Request]) -> Reply:
        """Send one request and return its reply, resending it (same seq) up to `retries` times."""
        request = build(self.next_seq())
        line = encode_request(request)
        for attempt in range(self.retries + 1):
            if attempt:
                log.info("resending %s (attempt %d)", describe(request), attempt + 1)
                self.link.reset_input()
            self.link.write_line(line)
            reply = self._await({request.seq}, self._timeout(len(line)))
            if reply is not None and reply.seq is not None:
                return _checked(request, reply)
        raise NoResponse(
            f"device did not answer {describe(request)} after {self.retries + 1} tries "
            f"({self.reply_timeout:g} s each): check the cable, baud rate and that the firmware runs"
        )

    def stream(self, requests: Sequence[Request]) -> list[Reply]:
        """Send requests with up to `window` in flight; return their replies in order.

        Raises NoResponse on a timeout or NACK and ErrorResponse on the first error reply: a bulk
        transfer is restarted as a whole by the caller rather than patched line by line.
        """
        replies: list[Reply | None] = [None] * len(requests)
        pending: dict[int, tuple[int, int]] = {}  # seq -> (index, line length); <= window: no collisions
        sent = 0
        while sent < len(requests) or pending:
            while sent < len(requests) and len(pending) < self.window:
                line = encode_request(requests[sent])
                self.link.write_line(line)
                pending[requests[sent].seq] = (sent, len(line))
                sent += 1
            reply = self._await(set(pending), self._timeout(sum(n for _, n in pending.values())))
            if reply is None or reply.seq is None:
                what = "no reply" if reply is None else "the device could not read a line"
                raise NoResponse(f"transfer interrupted after {sent} of {len(requests)} lines: {what}")
            index, _ = pending.pop(reply.seq)
            replies[index] = _checked(requests[index], reply)
        return [r for r in replies if r is not None]

    def _timeout(self, bytes_out: int) -> float:
        """Reply timeout: the base plus the wire time of what is in flight and of a longish reply."""
        baud = self.link.baudrate
        return self.reply_timeout + ((bytes_out + _REPLY_ALLOWANCE) * 10 / baud if baud else 0.0)

    def _await(self, seqs: set[int], timeout: float) -> Reply | None:
        """Return the first valid reply for one of `seqs` or a NACK; None on timeout."""
        deadline = time.monotonic() + timeout
        while (remaining := deadline - time.monotonic()) > 0:
            line = self.link.read_line(remaining)
            if line is None:
                return None
            try:
                reply = parse_reply(line)
            except ParseError as exc:
                log.debug("discarding garbage line from device: %s", exc.reason)
                continue
            if reply.seq is None or reply.seq in seqs:
                return reply
            log.debug("discarding stale or duplicated reply for seq %02X", reply.seq)
        return None


def _checked(request: Request, reply: Reply) -> Reply:
    if isinstance(reply, ErrorReply):
        raise ErrorResponse(describe(request), reply.code, reply.name, reply.detail)
    return reply
