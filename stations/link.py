"""The serial line to one device: the `SerialLink` port and its pyserial adapter.

Responsible for: opening a port by path or URL (`/dev/ttyUSB0`, `COM3`, `socket://`, `rfc2217://`,
`loop://`) exclusively, moving whole lines in and out with bounded length and timeouts, and turning
pyserial/OS errors into `LinkError` messages an operator can act on. This is the ONLY module that
imports pyserial. It runs on Windows and POSIX alike (no termios/fcntl here).
Not responsible for: what the lines mean, checksums or retries (see `stations.drivers.line_protocol.protocol`,
`stations.drivers.line_protocol.driver`).
"""

from __future__ import annotations

import contextlib
import errno
import time
from abc import ABC, abstractmethod

import serial

from stations.errors import LinkError, PortVanished
from stations.line_buffer import MAX_LINE_BYTES, LineBuffer

__all__ = ["LineBuffer", "LinkError", "PortVanished", "PySerialLink", "SerialLink", "open_error"]

_POLL_S = 0.05  # pyserial read timeout; read_line loops on it until its own deadline
_WRITE_TIMEOUT_S = 2.0


class SerialLink(ABC):
    """A line-oriented serial connection to one device."""

    # Line rate in bit/s when the link is a UART, so reply timeouts can grow with line length
    # (a 1 KiB line takes 0.09 s at 115,200 baud but 8.5 s at 1,200). None: not known.
    baudrate: int | None = None

    @abstractmethod
    def write_line(self, line: bytes) -> None:
        """Send one complete line (including its newline)."""

    @abstractmethod
    def read_line(self, timeout: float) -> bytes | None:
        """Return the next line including its newline, or None if none completed within `timeout` s.

        A line longer than the protocol bound is returned cut at bound + 1 bytes (so the parser
        rejects it as overlong) and the rest of it is discarded up to its newline.
        """

    def read_available(self, timeout: float) -> bytes:
        """Return whatever arrived, partial lines included (b"" if nothing within `timeout` s).

        Needed by consoles, whose prompts (`login: `) never end in a newline. Optional: a link
        that only moves whole lines may leave this unimplemented.
        """
        raise NotImplementedError(f"{type(self).__name__} cannot read partial lines")

    @abstractmethod
    def reset_input(self) -> None:
        """Discard everything received but not yet read (used to resync after noise)."""

    @abstractmethod
    def close(self) -> None:
        """Release the port; safe to call twice."""


class PySerialLink(SerialLink):
    """`SerialLink` over pyserial's `serial_for_url`, opened exclusively."""

    def __init__(self, url: str, baudrate: int = 115_200, *, max_line: int = MAX_LINE_BYTES) -> None:
        self.url = url
        self.baudrate = baudrate
        self._buffer = LineBuffer(max_line)
        try:
            self._port = serial.serial_for_url(
                url, baudrate=baudrate, timeout=_POLL_S, write_timeout=_WRITE_TIMEOUT_S, exclusive=True
            )
        except (serial.SerialException, OSError, ValueError) as exc:
            raise open_error(url, exc) from None

    def write_line(self, line: bytes) -> None:
        try:
            self._port.write(line)
        except (serial.SerialException, OSError) as exc:
            raise self._vanished("writing to", exc) from None

    def read_line(self, timeout: float) -> bytes | None:
        deadline = time.monotonic() + timeout
        while (line := self._buffer.pop_line()) is None:
            if time.monotonic() >= deadline:
                return None
            try:
                data = self._port.read(1)
                if data:
                    data += self._port.read(self._port.in_waiting)
            except (serial.SerialException, OSError, TypeError) as exc:
                # pyserial raises TypeError when the fd was closed under it by another thread.
                raise self._vanished("reading from", exc) from None
            self._buffer.feed(data)
        return line

    def read_available(self, timeout: float) -> bytes:
        pending = self._buffer.drain()
        deadline = time.monotonic() + timeout
        while not pending:
            try:
                pending = self._port.read(1)
                if pending:
                    pending += self._port.read(self._port.in_waiting)
            except (serial.SerialException, OSError, TypeError) as exc:
                raise self._vanished("reading from", exc) from None
            if time.monotonic() >= deadline:
                break
        return pending

    def reset_input(self) -> None:
        self._buffer.clear()
        try:
            self._port.reset_input_buffer()
        except Exception as exc:  # also termios.error etc., which cannot be imported portably
            raise self._vanished("resetting", exc) from None

    def close(self) -> None:
        with contextlib.suppress(serial.SerialException, OSError):  # a vanished port: nothing to release
            self._port.close()

    def _vanished(self, action: str, exc: BaseException) -> PortVanished:
        if not self._port.is_open:
            return PortVanished(f"port {self.url} is closed")
        return PortVanished(
            f"port {self.url} vanished while {action} it ({exc}): "
            "check the cable and that the device is powered"
        )


def open_error(url: str, exc: BaseException) -> LinkError:
    """Translate what pyserial/the OS said when opening `url` into an actionable one-line LinkError."""
    text = str(exc)
    code = getattr(exc, "errno", None)
    lowered = text.lower()
    if isinstance(exc, ValueError):
        return LinkError(f"cannot open {url}: invalid port or setting ({text})", retryable=False)
    if code == errno.ENOENT or "filenotfounderror" in lowered or "cannot find the file" in lowered:
        return LinkError(f"no such port {url}: is the device plugged in?")
    if (
        code in (errno.EBUSY, errno.EAGAIN, errno.EWOULDBLOCK)
        or "exclusively lock" in lowered
        or "access is denied" in lowered  # Windows: COM ports are always exclusive
    ):
        return LinkError(f"port {url} is in use by another program: close it (terminal, other station agent)")
    if code == errno.EACCES or "permission denied" in lowered:
        return LinkError(
            f"permission denied opening {url}: add the station's user to the port's group (e.g. dialout)",
            retryable=False,
        )
    return LinkError(f"cannot open {url}: {text}")
