"""USB port matching over real pyserial ListPortInfo objects (what comports() returns)."""

from __future__ import annotations

import pytest
from serial.tools.list_ports_common import ListPortInfo

from stations.runtime.usb_ports import UsbMatch, UsbSpecError, matching_ports, parse_usb_spec


def _port(device: str, vid: int | None, pid: int | None, serial: str | None = None) -> ListPortInfo:
    info = ListPortInfo(device, skip_link_detection=True)
    info.vid, info.pid, info.serial_number = vid, pid, serial
    return info


PORTS = [
    _port("/dev/ttyUSB0", 0x0403, 0x6001, "FT12AB"),
    _port("/dev/ttyUSB1", 0x0403, 0x6001, "ft99zz"),
    _port("/dev/ttyACM0", 0x2341, 0x0043, "ARD1"),
    _port("/dev/ttyS0", None, None),  # a built-in UART: no USB ids at all
    _port("COM7", 0x10C4, 0xEA60, None),
]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("0403:6001", UsbMatch(0x0403, 0x6001)),
        ("10C4:ea60", UsbMatch(0x10C4, 0xEA60)),
        ("0x0403:0X6001", UsbMatch(0x0403, 0x6001)),
        ("0403:6001:FT*", UsbMatch(0x0403, 0x6001, "FT*")),
        ("0403:6001:a:b", UsbMatch(0x0403, 0x6001, "a:b")),
    ],
)
def test_parse(text: str, expected: UsbMatch) -> None:
    assert parse_usb_spec(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("0403", "expected VID:PID"),
        ("", "expected VID:PID"),
        ("04g3:6001", "vendor id '04g3' is not 1-4 hex digits"),
        ("0403:160001", "product id '160001' is not 1-4 hex digits"),
        (":6001", "vendor id '' is not"),
        ("0403:6001:", "serial-number pattern after the second ':' is empty"),
    ],
)
def test_parse_errors_say_what_is_wrong(text: str, message: str) -> None:
    with pytest.raises(UsbSpecError, match=message.replace("(", r"\(").replace("*", r"\*")):
        parse_usb_spec(text)


def test_vid_pid_selects_every_adapter_of_that_kind() -> None:
    assert matching_ports(PORTS, [parse_usb_spec("0403:6001")]) == ["/dev/ttyUSB0", "/dev/ttyUSB1"]


def test_serial_glob_is_case_insensitive() -> None:
    assert matching_ports(PORTS, [parse_usb_spec("0403:6001:ft12*")]) == ["/dev/ttyUSB0"]
    assert matching_ports(PORTS, [parse_usb_spec("0403:6001:FT9?ZZ")]) == ["/dev/ttyUSB1"]


def test_a_glob_never_matches_a_port_without_serial_number_unless_it_is_star() -> None:
    assert matching_ports(PORTS, [parse_usb_spec("10c4:ea60:X*")]) == []
    assert matching_ports(PORTS, [parse_usb_spec("10c4:ea60:*")]) == ["COM7"]


def test_several_specs_union_and_non_usb_ports_never_match() -> None:
    specs = [parse_usb_spec("2341:0043"), parse_usb_spec("10C4:EA60")]
    assert matching_ports(PORTS, specs) == ["/dev/ttyACM0", "COM7"]
    assert matching_ports(PORTS, []) == []


def test_str_round_trips() -> None:
    assert str(parse_usb_spec("10C4:EA60:Ab*")) == "10c4:ea60:Ab*"
