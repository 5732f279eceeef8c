"""Where labels go: a network label printer on raw TCP (port 9100) or a folder.

Responsible for: delivering one label's bytes, or raising `PrinterError` with a line an operator can act
on. Not responsible for: retrying or remembering labels (`stations.labels.spooler`).
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Protocol
from urllib.parse import urlsplit

RAW_PRINT_PORT = 9100


class PrinterError(RuntimeError):
    """A label could not be delivered; the message says to which printer and why."""


class LabelPrinter(Protocol):
    """Something that takes a whole label program."""

    def send(self, name: str, data: bytes) -> None:
        """Deliver one label (`name` identifies it, e.g. for a file) or raise `PrinterError`."""

    def describe(self) -> str:
        """Where labels go, for messages."""


class TcpLabelPrinter:
    """A printer that accepts raw ZPL on a TCP port (Zebra and compatibles: 9100)."""

    def __init__(self, host: str, port: int = RAW_PRINT_PORT, timeout: float = 5.0) -> None:
        self.host, self.port, self.timeout = host, port, timeout

    def describe(self) -> str:
        return f"printer {self.host}:{self.port}"

    def send(self, name: str, data: bytes) -> None:
        try:
            with socket.create_connection((self.host, self.port), timeout=self.timeout) as sock:
                sock.sendall(data)
                sock.shutdown(socket.SHUT_WR)
        except OSError as exc:
            reason = exc.strerror or type(exc).__name__
            raise PrinterError(f"{self.describe()} unreachable ({reason})") from None


class FolderLabelPrinter:
    """Writes each label as `<name>.zpl` into a folder (a print server or a person picks them up)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def describe(self) -> str:
        return f"label folder {self.folder}"

    def send(self, name: str, data: bytes) -> None:
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            partial = self.folder / f".{name}.zpl.partial"
            partial.write_bytes(data)
            os.replace(partial, self.folder / f"{name}.zpl")
        except OSError as exc:
            raise PrinterError(f"{self.describe()}: {exc.strerror or exc}") from None


def printer_from_spec(spec: str) -> LabelPrinter:
    """`tcp://HOST[:PORT]` (default port 9100) or `file:DIR` / a folder path; raise ValueError if neither."""
    if spec.startswith("tcp://"):
        parts = urlsplit(spec)
        try:
            port = parts.port or RAW_PRINT_PORT
        except ValueError:
            raise ValueError(f"label_printer {spec!r}: the port is not a number") from None
        if not parts.hostname:
            raise ValueError(f"label_printer {spec!r}: no host; use tcp://HOST:9100")
        return TcpLabelPrinter(parts.hostname, port)
    if spec.startswith("file:"):
        return FolderLabelPrinter(Path(spec.removeprefix("file:").removeprefix("//")))
    if "://" in spec or not spec:
        raise ValueError(f"label_printer {spec!r}: use tcp://HOST:9100 or file:/path/to/folder")
    return FolderLabelPrinter(Path(spec))
