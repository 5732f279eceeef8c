"""Render a unit label in ZPL II (Zebra's label language), as a pure function.

Responsible for: the label layout and escaping every field so that data from a device can never inject
ZPL commands. Not responsible for: sending it (`stations.labels.printers`) or queueing it.

Layout (203 dpi, 4 x 2 inch = 812 x 406 dots): a QR code of the registration ID on the left (what a
scanner at packing or in the field reads back), the human-readable fields on the right.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

# ^FH with this indicator lets any byte be written as _XX; ZPL's own command characters (^ and ~) and
# the indicator itself are escaped that way, so a serial like "A^XZ" prints instead of ending the label.
_HEX_INDICATOR = "_"
_ESCAPED = {"^", "~", _HEX_INDICATOR, "\\"}
MAX_FIELD = 64


@dataclass(frozen=True, slots=True)
class UnitLabel:
    """What a label says about one unit."""

    registration_id: str
    serial: str
    mac: str
    product: str
    printed_on: date
    station: str = ""


def escape_field(text: str) -> str:
    """Make `text` safe as ZPL field data (used with ^FH_); unprintable characters become spaces."""
    out = []
    for char in text[:MAX_FIELD]:
        if char in _ESCAPED:
            out.append(f"{_HEX_INDICATOR}{ord(char):02X}")
        elif not char.isprintable():  # control characters and Unicode line separators
            out.append(" ")
        else:
            out.append(char)
    return "".join(out)


def render_zpl(label: UnitLabel) -> str:
    """Return the ZPL II program that prints `label` once."""
    text_lines = [
        ("SN", label.serial),
        ("MAC", label.mac),
        ("PRODUCT", label.product),
        ("DATE", label.printed_on.isoformat()),
    ]
    parts = [
        "^XA",
        "^CI28",  # field data is UTF-8
        "^PW812",
        "^LL406",
        # QR: normal orientation, model 2, magnification 6; data "MA," = error correction M, automatic mode.
        f"^FO20,20^BQN,2,6^FH{_HEX_INDICATOR}^FDMA,{escape_field(label.registration_id)}^FS",
    ]
    y = 30
    for name, value in text_lines:
        parts.append(f"^FO300,{y}^A0N,30,30^FH{_HEX_INDICATOR}^FD{name} {escape_field(value)}^FS")
        y += 45
    parts.append(f"^FO300,{y}^A0N,22,22^FH{_HEX_INDICATOR}^FD{escape_field(label.registration_id)}^FS")
    parts.append("^PQ1")
    parts.append("^XZ")
    return "\n".join(parts) + "\n"
