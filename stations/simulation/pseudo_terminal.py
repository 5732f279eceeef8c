"""Pseudo-terminal plumbing shared by the simulators (`SimulatedDevice`, `SimulatedConsole`).

Responsible for: opening a raw pty pair, pacing bytes like a UART (a pty has no baud rate), and
a writer loop that never wedges when the station stops reading.
Not responsible for: what a simulated device says (the simulators). POSIX only at run time:
importing works everywhere, `open_raw_pty()` refuses on Windows.
"""

from __future__ import annotations

import os
import queue
import sys
import threading
import time
from collections.abc import Callable

if sys.platform != "win32":
    import tty

__all__ = ["SimulatorUnavailable", "Uart", "open_raw_pty", "pump_outbox"]

_BITS_PER_BYTE = 10  # start + 8 data + stop


class SimulatorUnavailable(RuntimeError):
    """The simulator cannot run here (it needs POSIX pseudo-terminals)."""


class Uart:
    """Pace bytes like a UART at `baud` (None: no pacing); one instance per direction."""

    def __init__(self, baud: int | None) -> None:
        self._per_byte = _BITS_PER_BYTE / baud if baud else 0.0
        self._busy_until = 0.0

    def wait_for(self, nbytes: int, started: float | None = None) -> None:
        """Sleep until `nbytes` more bytes would have crossed the wire."""
        if not self._per_byte:
            return
        now = time.monotonic()
        self._busy_until = max(self._busy_until, started or now) + nbytes * self._per_byte
        if self._busy_until > now:
            time.sleep(self._busy_until - now)


def open_raw_pty(what: str) -> tuple[int, int, str]:
    """Open a pty pair in raw mode: (master fd, slave fd, station-side tty path)."""
    if sys.platform == "win32":
        raise SimulatorUnavailable(f"{what} needs POSIX pseudo-terminals; run it on Linux/macOS")
    master, slave = os.openpty()
    tty.setraw(slave)  # no echo, no CR/LF translation: bytes as a UART would carry them
    os.set_blocking(master, False)  # a station that stops reading must not wedge the writer
    return master, slave, os.ttyname(slave)


def pump_outbox(
    outbox: queue.Queue[bytes | None],
    master: Callable[[], int | None],
    stop: threading.Event,
    baud: int | None,
) -> None:
    """Write queued bytes to the pty master (paced) until a None arrives or the pty closes."""
    uart = Uart(baud)
    while (data := outbox.get()) is not None:
        uart.wait_for(len(data))
        while data and not stop.is_set() and (fd := master()) is not None:
            try:
                data = data[os.write(fd, data) :]
            except BlockingIOError:
                stop.wait(0.01)  # pty buffer full: the station is not reading yet
            except OSError:
                return
