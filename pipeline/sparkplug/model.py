"""The line's state as Sparkplug B metrics (pure): units per state, yield, last failure.

Responsible for: what the edge node (the line) and each device (a station) report, as typed metrics
with stable names, from a snapshot of counts read from the database.
Not responsible for: reading the database (`pipeline.db.line_state`), protobuf encoding
(`pipeline.sparkplug.codec`) or MQTT sessions and sequence numbers (`pipeline.sparkplug.publisher`).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from pipeline.domain.model import UnitState

PASSED = (UnitState.ASSIGNED, UnitState.ONLINE)
FINISHED = (*PASSED, UnitState.NOT_ONLINE, UnitState.FAILED)


class Kind(enum.StrEnum):
    """Sparkplug B datatypes edgeline uses."""

    INT64 = "Int64"
    UINT64 = "UInt64"
    DOUBLE = "Double"
    STRING = "String"
    BOOLEAN = "Boolean"


@dataclass(frozen=True, slots=True)
class MetricValue:
    """One metric: name (Sparkplug folders with `/`), datatype, value."""

    name: str
    kind: Kind
    value: int | float | str | bool


@dataclass(frozen=True, slots=True)
class StationState:
    """Units of one station per state, and its most recent failure (`""` if none)."""

    counts: dict[str, int] = field(default_factory=dict)
    last_failure: str = ""


@dataclass(frozen=True, slots=True)
class LineSnapshot:
    """Per station (Sparkplug device) state of one line (Sparkplug edge node)."""

    stations: dict[str, StationState] = field(default_factory=dict)

    def line_state(self) -> StationState:
        """The line as a whole: counts summed, the last failure of any station (most recent first)."""
        counts: dict[str, int] = {}
        for station in self.stations.values():
            for state, count in station.counts.items():
                counts[state] = counts.get(state, 0) + count
        failures = [s.last_failure for s in self.stations.values() if s.last_failure]
        return StationState(counts, failures[0] if failures else "")


def yield_of(counts: dict[str, int]) -> float:
    """Share of finished units that passed: (assigned + online) / (those + not_online + failed); 0 if none."""
    finished = sum(counts.get(s.value, 0) for s in FINISHED)
    return sum(counts.get(s.value, 0) for s in PASSED) / finished if finished else 0.0


def metrics_of(state: StationState) -> list[MetricValue]:
    """The metrics of a station or the line: `units/<state>` for every state, `yield`, `last failure`."""
    metrics = [MetricValue(f"units/{s.value}", Kind.INT64, state.counts.get(s.value, 0)) for s in UnitState]
    metrics.append(MetricValue("units/total", Kind.INT64, sum(state.counts.values())))
    metrics.append(MetricValue("yield", Kind.DOUBLE, yield_of(state.counts)))
    metrics.append(MetricValue("last failure", Kind.STRING, state.last_failure))
    return metrics


def changed(previous: list[MetricValue] | None, current: list[MetricValue]) -> list[MetricValue]:
    """Metrics whose value differs from the last report (Sparkplug reports by exception)."""
    if previous is None:
        return current
    before = {m.name: m.value for m in previous}
    return [m for m in current if before.get(m.name) != m.value]
