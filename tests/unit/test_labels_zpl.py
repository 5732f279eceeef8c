"""ZPL rendering of unit labels: layout, and no injection of ZPL commands through device data."""

from __future__ import annotations

from datetime import date

from hypothesis import given
from hypothesis import strategies as st

from stations.labels.zpl import UnitLabel, escape_field, render_zpl

LABEL = UnitLabel(
    registration_id="sn-007-888-abc-mac-a1-b2-c3-d4-e5-f6",
    serial="007-888-ABC",
    mac="A1:B2:C3:D4:E5:F6",
    product="gateway-x",
    printed_on=date(2026, 12, 3),
)


def test_label_is_one_program_with_a_qr_of_the_registration_id() -> None:
    zpl = render_zpl(LABEL)
    assert zpl.startswith("^XA\n") and zpl.endswith("^XZ\n")
    assert zpl.count("^XA") == 1 and zpl.count("^XZ") == 1
    assert "^BQN,2,6^FH_^FDMA,sn-007-888-abc-mac-a1-b2-c3-d4-e5-f6^FS" in zpl
    for text in ("SN 007-888-ABC", "MAC A1:B2:C3:D4:E5:F6", "PRODUCT gateway-x", "DATE 2026-12-03"):
        assert f"^FD{text}^FS" in zpl


def test_command_characters_in_data_are_hex_escaped() -> None:
    assert escape_field("A^XZ~JR_\\") == "A_5EXZ_7EJR_5F_5C"
    assert escape_field("line\nbreak\x00") == "line break "


@given(st.text(max_size=200))
def test_no_field_can_end_the_label_or_start_a_command(data: str) -> None:
    label = UnitLabel(data, data, data, data, date(2026, 1, 1))
    zpl = render_zpl(label)
    assert zpl.count("^XZ") == 1 and zpl.count("^XA") == 1
    assert "~" not in zpl
    # every caret is one of ours: the program's commands are exactly the lines we wrote
    assert all(line.startswith("^") for line in zpl.splitlines())
    assert len(escape_field(data)) <= 3 * 64
