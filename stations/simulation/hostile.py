"""Hostile simulated devices for `station run --simulate --sim-hostile`: the fault suite's bad actors.

Responsible for: turning kind names (garbage, binary, long-line, slow, vanish, bad-serial, zero-mac,
broadcast-mac, multicast-mac, conflict) into per-device simulator faults and identities, every Nth
device taking the next kind in turn, so a test knows exactly which devices misbehave and how.
Not responsible for: the simulator itself (`stations.simulator`) or judging the outcome.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from stations.drivers.line_protocol.simulated_firmware import Faults
from stations.drivers.port import DeviceFactory, SimulatedUnit
from stations.simulation.fleet import DeviceSpec

LINE_FAULTS: dict[str, Callable[[], Faults]] = {
    "garbage": lambda: Faults(garbage=True),  # answers everything with random bytes
    "binary": lambda: Faults(noise=True),  # binary junk before every reply
    "long-line": lambda: Faults(flood_bytes=10 * 1024 * 1024),  # one 10 MiB line
    "slow": lambda: Faults(latency_s=0.3),
    "vanish": lambda: Faults(disconnect_after_chunks=1),  # unplugged mid-flash (a config is 1-2 chunks)
}
IDENTITY_KINDS = ("bad-serial", "zero-mac", "broadcast-mac", "multicast-mac", "conflict")
KINDS = (*LINE_FAULTS, *IDENTITY_KINDS)
MAY_PASS = frozenset({"binary", "long-line", "slow"})
"""Kinds a robust station may still provision; every other kind must never reach `flashed`."""


class HostileSpecError(ValueError):
    """A --sim-hostile value that names an unknown kind."""


def parse_kinds(text: str) -> tuple[str, ...]:
    """`garbage,zero-mac` -> ("garbage", "zero-mac"); unknown names are refused with the known ones."""
    kinds = tuple(k.strip() for k in text.split(",") if k.strip())
    unknown = [k for k in kinds if k not in KINDS]
    if unknown or not kinds:
        raise HostileSpecError(
            f"unknown --sim-hostile kind(s) {', '.join(unknown) or '(none)'}; known: {', '.join(KINDS)}"
        )
    return kinds


def hostile_plan(count: int, kinds: tuple[str, ...], every: int) -> dict[int, str]:
    """Device index -> kind: indexes every-1, 2*every-1, ... take the kinds in turn (cycling)."""
    slots = range(every - 1, count, every) if every > 0 and kinds else range(0)
    return {index: kinds[n % len(kinds)] for n, index in enumerate(slots)}


def apply_identities(devices: list[DeviceSpec], plan: dict[int, str]) -> list[DeviceSpec]:
    """The fleet with the planned identity faults written into the devices' serials and MACs."""
    out = list(devices)
    for index, kind in plan.items():
        spec = out[index]
        if kind == "bad-serial":
            out[index] = dataclasses.replace(spec, serial=f"{spec.serial} BAD/#")
        elif kind == "zero-mac":
            out[index] = dataclasses.replace(spec, mac="00:00:00:00:00:00")
        elif kind == "broadcast-mac":
            out[index] = dataclasses.replace(spec, mac="ff:ff:ff:ff:ff:ff")
        elif kind == "multicast-mac":
            out[index] = dataclasses.replace(spec, mac="03" + spec.mac[2:])
        elif kind == "conflict" and index > 0:
            # A clone of the line's first device (its MAC under this device's serial): known to the
            # pipeline long before the clone is plugged in. (Copying a neighbour plugged in at the same
            # moment made either twin the first and the other the conflict, whichever scan came first.)
            out[index] = dataclasses.replace(spec, mac=out[0].mac)
    return out


def hostile_factory(base: DeviceFactory, faults_by_serial: dict[str, Faults]) -> DeviceFactory:
    """A factory that gives the planned devices their line faults (the simulator must accept `faults`)."""

    def make(
        serial: str, mac: str, model: str, firmware: str, flash_dir: Any, **kwargs: Any
    ) -> SimulatedUnit:
        maker: Callable[..., SimulatedUnit] = base  # SimulatedDevice takes `faults`; consoles do not
        if serial in faults_by_serial:
            kwargs["faults"] = faults_by_serial[serial]
        return maker(serial, mac, model, firmware, flash_dir, **kwargs)

    return make  # type: ignore[return-value]


def line_faults(devices: list[DeviceSpec], plan: dict[int, str]) -> dict[str, Faults]:
    """Serial -> simulator faults for the planned line-level kinds."""
    return {devices[i].serial: LINE_FAULTS[kind]() for i, kind in plan.items() if kind in LINE_FAULTS}
