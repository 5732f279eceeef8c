"""The topic tree (architecture §5): versioned, hierarchical, stations confined under their own prefix.

    edgeline/v1/lines/{line}/stations/{station}/events/{name}     station -> pipeline
    edgeline/v1/lines/{line}/stations/{station}/commands/{name}   pipeline -> one station
    edgeline/v1/lines/{line}/stations/{station}/status            retained presence (+ last will)
    edgeline/v1/units/events/{name}                               pipeline -> everyone
    edgeline/v1/deadletter/{reason}                               messages no consumer could accept

A `root` other than `edgeline` lets tests and parallel lines share one broker without crosstalk.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

VERSION = "v1"
_SEGMENT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$")


class TopicError(ValueError):
    """A line or station name that cannot be a topic segment (wildcards, slashes, spaces, '$')."""


def check_segment(kind: str, value: str) -> str:
    """Return `value` if it is a safe topic segment, else raise TopicError naming `kind`."""
    if not _SEGMENT.fullmatch(value):  # not match(): '$' would accept a trailing newline
        raise TopicError(
            f"{kind} name {value!r} is not usable in MQTT topics: use 1-64 letters, digits, '-', '_' or '.'"
        )
    return value


@dataclass(frozen=True, slots=True)
class Topics:
    """Builds and matches topics under one root."""

    root: str = "edgeline"

    @property
    def base(self) -> str:
        return f"{self.root}/{VERSION}"

    def station_prefix(self, line: str, station: str) -> str:
        return f"{self.base}/lines/{check_segment('line', line)}/stations/{check_segment('station', station)}"

    def station_event(self, line: str, station: str, name: str) -> str:
        return f"{self.station_prefix(line, station)}/events/{name}"

    def station_command(self, line: str, station: str, name: str) -> str:
        return f"{self.station_prefix(line, station)}/commands/{name}"

    def station_status(self, line: str, station: str) -> str:
        return f"{self.station_prefix(line, station)}/status"

    def unit_event(self, name: str) -> str:
        return f"{self.base}/units/events/{name}"

    def deadletter(self, reason: str) -> str:
        return f"{self.base}/deadletter/{reason}"

    # Subscription filters
    def all_station_events(self) -> str:
        return f"{self.base}/lines/+/stations/+/events/#"

    def all_unit_events(self) -> str:
        return f"{self.base}/units/events/#"

    def commands_for(self, line: str, station: str) -> str:
        return f"{self.station_prefix(line, station)}/commands/#"
