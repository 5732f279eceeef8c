"""Choosing a station's ports by USB identity (`--usb VID:PID[:SERIAL_GLOB]`), with hot-plug.

Responsible for: parsing match specs, the pure matching of enumerated ports against them, and
listing the currently matching ports with pyserial's `serial.tools.list_ports.comports()` (the one
place besides `stations.link` that imports pyserial: enumeration, not I/O). Works the same on Linux
(`/dev/ttyUSB*`, `/dev/ttyACM*`), macOS and Windows (`COM*`).
Not responsible for: polling or starting workers (`stations.runtime.supervisor`), or opening ports
(`stations.link`).
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from serial.tools.list_ports_common import ListPortInfo


class UsbSpecError(ValueError):
    """A `--usb` value that is not VID:PID[:SERIAL_GLOB]."""


@dataclass(frozen=True, slots=True)
class UsbMatch:
    """Ports whose USB vendor/product id (and optionally serial number glob) match."""

    vid: int
    pid: int
    serial_glob: str | None = None

    def matches(self, port: ListPortInfo) -> bool:
        """Whether an enumerated port is one of ours (hex ids and serial glob are case-insensitive)."""
        if port.vid != self.vid or port.pid != self.pid:
            return False
        if self.serial_glob is None:
            return True
        serial = (port.serial_number or "").lower()
        return fnmatch.fnmatchcase(serial, self.serial_glob.lower())

    def __str__(self) -> str:
        glob = f":{self.serial_glob}" if self.serial_glob is not None else ""
        return f"{self.vid:04x}:{self.pid:04x}{glob}"


def parse_usb_spec(text: str) -> UsbMatch:
    """Parse `VID:PID` or `VID:PID:SERIAL_GLOB` (ids in hex, e.g. `0403:6001:FT*`)."""
    parts = text.strip().split(":", 2)
    if len(parts) < 2:
        raise UsbSpecError(f"--usb {text!r}: expected VID:PID[:SERIAL_GLOB] in hex, e.g. 0403:6001")
    vid, pid = _hex_id(text, "vendor", parts[0]), _hex_id(text, "product", parts[1])
    glob = parts[2] if len(parts) == 3 else None
    if glob == "":
        raise UsbSpecError(f"--usb {text!r}: the serial-number pattern after the second ':' is empty")
    return UsbMatch(vid, pid, glob)


def _hex_id(text: str, name: str, value: str) -> int:
    digits = value.strip().lower().removeprefix("0x")
    if not 1 <= len(digits) <= 4 or any(c not in "0123456789abcdef" for c in digits):
        raise UsbSpecError(
            f"--usb {text!r}: USB {name} id {value!r} is not 1-4 hex digits (see `lsusb` or Device Manager)"
        )
    return int(digits, 16)


def matching_ports(ports: Iterable[ListPortInfo], matches: Sequence[UsbMatch]) -> list[str]:
    """The device names (`/dev/ttyUSB0`, `COM3`) of the ports any spec matches, sorted."""
    return sorted({p.device for p in ports if any(m.matches(p) for m in matches)})


def present_usb_ports(matches: Sequence[UsbMatch]) -> list[str]:
    """The matching ports plugged in right now."""
    from serial.tools.list_ports import comports

    return matching_ports(comports(), matches)
