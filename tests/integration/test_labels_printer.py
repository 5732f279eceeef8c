"""Unit labels against a real TCP listener standing in for a network label printer (raw port 9100)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pytest
import zxingcpp
from conftest import free_port
from PIL import Image

from stations.labels.printers import FolderLabelPrinter, TcpLabelPrinter, printer_from_spec
from stations.labels.qr_preview import write_qr_png
from stations.labels.spooler import LabelSpooler
from stations.labels.zpl import UnitLabel, render_zpl
from stations.runtime.results import PortResult

REG_ID = "sn-007-888-abc-mac-a1-b2-c3-d4-e5-f6"


class FakePrinter:
    """A real TCP server that records each connection's bytes as one received label."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.labels: list[bytes] = []
        self._server = socket.create_server(("127.0.0.1", port))
        self._server.settimeout(0.2)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._server.accept()
            except TimeoutError:
                continue
            with conn:
                chunks = []
                while data := conn.recv(65536):
                    chunks.append(data)
                self.labels.append(b"".join(chunks))

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self._server.close()


@pytest.fixture
def port() -> int:
    return free_port()


@pytest.fixture
def printer(port: int) -> Iterator[FakePrinter]:
    fake = FakePrinter(port)
    yield fake
    fake.close()


def wait_until(condition: object, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def pass_result(reg_id: str = REG_ID) -> PortResult:
    return PortResult(
        "S1",
        "p0",
        "PASS",
        "config written and verified",
        reg_id,
        "007-888-ABC",
        "A1:B2:C3:D4:E5:F6",
    )


def test_a_pass_prints_exactly_the_rendered_label(tmp_path: Path, printer: FakePrinter) -> None:
    spooler = LabelSpooler(
        TcpLabelPrinter("127.0.0.1", printer.port), tmp_path / "q", product="gw", station="S1"
    ).start()
    try:
        spooler.on_result(pass_result())
        spooler.on_result(
            PortResult("S1", "p1", "FAIL", "read-back mismatch", "sn-x", "X", "00:11:22:33:44:55")
        )
        wait_until(lambda: len(printer.labels) == 1)
    finally:
        spooler.stop()
    expected = UnitLabel(REG_ID, "007-888-ABC", "A1:B2:C3:D4:E5:F6", "gw", date.today(), "S1")
    assert printer.labels == [render_zpl(expected).encode()]
    assert spooler.pending() == []


def test_printer_down_keeps_the_label_queued_and_tells_why(tmp_path: Path, port: int) -> None:
    notices: list[str] = []
    spooler = LabelSpooler(
        TcpLabelPrinter("127.0.0.1", port, timeout=1.0),
        tmp_path / "q",
        product="gw",
        on_notice=notices.append,
    ).start()
    try:
        spooler.on_result(pass_result())
        wait_until(lambda: notices)
        assert "queued" in notices[0] and f"127.0.0.1:{port} unreachable" in notices[0]
        assert len(spooler.pending()) == 1
        printer = FakePrinter(port)  # the printer comes back
        try:
            wait_until(lambda: len(printer.labels) == 1, timeout=40.0)
            wait_until(lambda: "is back" in notices[-1])
        finally:
            printer.close()
    finally:
        spooler.stop()
    assert spooler.pending() == [] and spooler.printed == [REG_ID]


def test_labels_queued_before_a_crash_are_printed_by_the_next_run(
    tmp_path: Path, printer: FakePrinter
) -> None:
    dead = LabelSpooler(TcpLabelPrinter("127.0.0.1", free_port()), tmp_path / "q", product="gw")
    dead.enqueue(UnitLabel(REG_ID, "007-888-ABC", "A1:B2:C3:D4:E5:F6", "gw", date.today()))  # never started
    assert len(dead.pending()) == 1
    spooler = LabelSpooler(TcpLabelPrinter("127.0.0.1", printer.port), tmp_path / "q", product="gw").start()
    try:
        wait_until(lambda: len(printer.labels) == 1)
    finally:
        spooler.stop()
    assert REG_ID.encode() in printer.labels[0]


def test_preview_qr_decodes_back_to_the_registration_id(tmp_path: Path) -> None:
    spooler = LabelSpooler(
        FolderLabelPrinter(tmp_path / "out"), tmp_path / "q", product="gw", preview_dir=tmp_path
    )
    spooler.on_result(pass_result())
    image = Image.open(tmp_path / f"{REG_ID}.png").convert("L")
    decoded = [code.text for code in zxingcpp.read_barcodes(image)]
    assert decoded == [REG_ID]


def test_direct_png_helper_round_trips(tmp_path: Path) -> None:
    path = write_qr_png("sn-1-mac-00-11-22-33-44-55", tmp_path / "a.png")
    assert [c.text for c in zxingcpp.read_barcodes(Image.open(path).convert("L"))] == [
        "sn-1-mac-00-11-22-33-44-55"
    ]


def test_folder_printer_and_specs(tmp_path: Path) -> None:
    assert isinstance(printer_from_spec("tcp://10.1.2.3"), TcpLabelPrinter)
    assert printer_from_spec("tcp://10.1.2.3:6101").port == 6101  # type: ignore[attr-defined]
    assert isinstance(printer_from_spec(f"file:{tmp_path}"), FolderLabelPrinter)
    for bad in ("tcp://", "tcp://h:x", "http://printer", ""):
        with pytest.raises(ValueError, match="label_printer"):
            printer_from_spec(bad)
    FolderLabelPrinter(tmp_path / "labels").send("one", b"^XA^XZ")
    assert (tmp_path / "labels" / "one.zpl").read_bytes() == b"^XA^XZ"
