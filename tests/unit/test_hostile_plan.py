"""--sim-hostile: which simulated devices misbehave, and how (pure planning, no ptys)."""

from __future__ import annotations

import pytest

from pipeline.domain.identity import DeviceIdentity, IdentityError
from stations.simulation.fleet import make_devices
from stations.simulation.hostile import (
    HostileSpecError,
    apply_identities,
    hostile_plan,
    line_faults,
    parse_kinds,
)


def test_every_nth_device_takes_the_kinds_in_turn() -> None:
    assert hostile_plan(10, ("garbage", "zero-mac"), 3) == {2: "garbage", 5: "zero-mac", 8: "garbage"}
    assert hostile_plan(10, ("garbage",), 0) == {}


def test_unknown_kinds_are_refused_with_the_known_ones() -> None:
    assert parse_kinds(" garbage, vanish ") == ("garbage", "vanish")
    with pytest.raises(HostileSpecError, match=r"unknown --sim-hostile kind.*nonsense.*known: garbage"):
        parse_kinds("garbage,nonsense")
    with pytest.raises(HostileSpecError):
        parse_kinds(" , ")


@pytest.mark.parametrize("kind", ["bad-serial", "zero-mac", "broadcast-mac"])
def test_bad_identities_are_ones_the_pipeline_refuses(kind: str) -> None:
    devices = apply_identities(make_devices(2, "H", b"\x01\x02"), {1: kind})
    with pytest.raises(IdentityError):
        DeviceIdentity.parse(devices[1].serial, devices[1].mac)


def test_a_conflict_clones_the_first_devices_mac_and_multicast_sets_the_group_bit() -> None:
    devices = apply_identities(make_devices(4, "H", b"\x01\x02"), {2: "conflict", 3: "multicast-mac"})
    assert devices[2].mac == devices[0].mac and devices[2].serial != devices[0].serial
    assert devices[1].mac != devices[0].mac
    assert int(devices[3].mac[:2], 16) & 1


def test_line_faults_only_for_line_kinds() -> None:
    devices = make_devices(4, "H", b"\x01\x02")
    faults = line_faults(devices, {0: "garbage", 1: "zero-mac", 2: "vanish"})
    assert set(faults) == {devices[0].serial, devices[2].serial}
    assert faults[devices[0].serial].garbage and faults[devices[2].serial].disconnect_after_chunks == 1
