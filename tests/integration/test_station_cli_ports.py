"""`edgeline station run` on a port that does not exist, or is in use, says so in one line (exit 2)."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from pipeline.cli.main import main
from pipeline.crypto.station_key import StationKeyPair
from stations.link import PySerialLink

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="uses POSIX pseudo-terminals")


@pytest.fixture
def key_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, free_tcp_port: int) -> Path:
    monkeypatch.setenv("EDGELINE_MQTT_URL", f"mqtt://127.0.0.1:{free_tcp_port}")
    return StationKeyPair.generate().save(tmp_path / "S1.key")


@pytest.fixture
def busy_pty() -> Iterator[str]:
    """A real pseudo-terminal that another program (this test) holds open exclusively."""
    controller, terminal = os.openpty()
    path = os.ttyname(terminal)
    holder = PySerialLink(path)
    yield path
    holder.close()
    os.close(terminal)
    os.close(controller)


def _run(key_file: Path, port: str) -> int:
    return main(["station", "run", "--name", "S1", "--key-file", str(key_file), "--port", port])


def test_a_port_that_does_not_exist(key_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert _run(key_file, "/dev/ttyNOPE") == 2
    out, err = capsys.readouterr()
    assert err.splitlines() == ["edgeline station: no such port /dev/ttyNOPE: is the device plugged in?"]
    assert out == ""


def test_a_port_in_use(key_file: Path, busy_pty: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert _run(key_file, busy_pty) == 2
    _, err = capsys.readouterr()
    assert err.splitlines() == [
        f"edgeline station: port {busy_pty} is in use by another program: "
        "close it (terminal, other station agent)"
    ]


def test_a_bad_usb_spec_is_a_usage_error(key_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["station", "run", "--name", "S1", "--key-file", str(key_file), "--usb", "04zz:1"]) == 2
    _, err = capsys.readouterr()
    assert len(err.splitlines()) == 1 and "vendor id '04zz' is not 1-4 hex digits" in err


def test_an_unreachable_broker_at_start_exits_3(
    key_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["station", "run", "--name", "S1", "--key-file", str(key_file), "--watch-dir", str(tmp_path / "p")]
    assert main(args) == 3
    _, err = capsys.readouterr()
    assert "cannot reach MQTT broker" in err.splitlines()[-1]
