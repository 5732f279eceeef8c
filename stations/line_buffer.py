"""Splitting a serial byte stream into bounded lines: shared by the serial link, drivers and simulators.

Responsible for: `LineBuffer` and the longest line any edgeline serial line carries. Pure code only.
Not responsible for: what a line means (each driver's parsing) or I/O (`stations.link`).
"""

from __future__ import annotations

MAX_LINE_BYTES = 1024  # including the trailing "\n"; a device needs one buffer of this size


class LineBuffer:
    """Split a byte stream into bounded lines (shared by links; pure, no I/O)."""

    def __init__(self, max_line: int = MAX_LINE_BYTES) -> None:
        self._max = max_line
        self._data = bytearray()
        self._skipping = False

    def feed(self, data: bytes) -> None:
        """Append received bytes."""
        self._data += data

    def drain(self) -> bytes:
        """Return and forget everything buffered, complete lines or not (for partial-line readers)."""
        data = bytes(self._data)
        self.clear()
        return data

    def clear(self) -> None:
        """Forget everything buffered (resync)."""
        self._data.clear()
        self._skipping = False

    def pop_line(self) -> bytes | None:
        """Return the next complete (or overlong) line, or None if more bytes are needed."""
        while True:
            end = self._data.find(b"\n")
            if self._skipping:
                if end < 0:
                    self._data.clear()
                    return None
                del self._data[: end + 1]
                self._skipping = False
                continue
            if 0 <= end < self._max:
                line = bytes(self._data[: end + 1])
                del self._data[: end + 1]
                return line
            if end < 0 and len(self._data) <= self._max:
                return None
            line = bytes(self._data[: self._max + 1])
            del self._data[: self._max + 1]
            self._skipping = not line.endswith(b"\n")
            return line
