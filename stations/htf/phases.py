"""OpenHTF phases that provision the device on the fixture; measurements land in the test record.

`provisioning_phases(plug)` returns them in order: read identity (the registration ID becomes the
record's DUT id), provision (scan published, encrypted config received), flash and verify (read-back
SHA-256), and with `assigned=True` wait assigned (until the pipeline says DPS assigned the device).
A failed step stops the test with the reason in the phase's `failure` measurement (empty on success)
and its log.
"""

from __future__ import annotations

import time
from typing import Any

import openhtf as htf

from stations.htf.plug import EdgelineStation
from stations.sequenced import ProvisioningError

_STATE_KEY = "edgeline"


@htf.measures(
    htf.Measurement("registration_id").with_validator(lambda value: bool(value)),
    htf.Measurement("serial"),
    htf.Measurement("mac"),
)
@htf.plug(station=EdgelineStation)
def read_identity(test: Any, station: EdgelineStation) -> htf.PhaseResult:
    """Read serial and MAC from the device and set the DUT id to its registration ID."""
    assert station.settings is not None
    try:
        unit = station.station.identify(station.settings.port)
    except ProvisioningError as exc:
        test.logger.error("%s", exc)
        return htf.PhaseResult.STOP
    test.dut_id = unit.registration_id
    test.measurements.registration_id = unit.registration_id
    test.measurements.serial = unit.serial
    test.measurements.mac = unit.mac
    test.state[_STATE_KEY] = {"unit": unit, "scanned_at": time.monotonic()}
    return htf.PhaseResult.CONTINUE


@htf.measures(htf.Measurement("scan_to_config_seconds").in_range(0, None), htf.Measurement("failure"))
@htf.plug(station=EdgelineStation)
def provision(test: Any, station: EdgelineStation) -> htf.PhaseResult:
    """Publish the scan and wait for the pipeline's encrypted config."""
    assert station.settings is not None
    state = test.state[_STATE_KEY]
    try:
        state["command"] = station.station.request_config(state["unit"], station.settings.config_timeout)
    except ProvisioningError as exc:
        test.measurements.failure = str(exc)
        test.logger.error("%s", exc)
        return htf.PhaseResult.STOP
    test.measurements.scan_to_config_seconds = time.monotonic() - state["scanned_at"]
    test.measurements.failure = ""
    return htf.PhaseResult.CONTINUE


@htf.measures(
    htf.Measurement("config_sha256").matches_regex(r"^[0-9a-f]{64}$"),
    htf.Measurement("config_path"),
    htf.Measurement("flash_seconds").in_range(0, None),
    htf.Measurement("failure"),
)
@htf.plug(station=EdgelineStation)
def flash_and_verify(test: Any, station: EdgelineStation) -> htf.PhaseResult:
    """Write the config, prove it by read-back SHA-256, report it to the pipeline, reboot."""
    state = test.state[_STATE_KEY]
    try:
        outcome = station.station.flash(state["unit"], state["command"])
    except ProvisioningError as exc:
        test.measurements.failure = str(exc)
        test.logger.error("%s", exc)
        return htf.PhaseResult.STOP
    test.measurements.config_sha256 = outcome.config_sha256
    test.measurements.config_path = outcome.config_path
    test.measurements.flash_seconds = outcome.seconds
    test.measurements.failure = ""
    return htf.PhaseResult.CONTINUE


@htf.measures(htf.Measurement("assign_seconds").in_range(0, None), htf.Measurement("failure"))
@htf.plug(station=EdgelineStation)
def wait_assigned(test: Any, station: EdgelineStation) -> htf.PhaseResult:
    """Wait until DPS assigned the device (the pipeline tells the station); optional: it may take minutes."""
    assert station.settings is not None
    try:
        waited = station.station.wait_assigned(
            test.state[_STATE_KEY]["unit"], station.settings.assign_timeout
        )
    except ProvisioningError as exc:
        test.measurements.failure = str(exc)
        test.logger.error("%s", exc)
        return htf.PhaseResult.STOP
    test.measurements.assign_seconds = waited
    test.measurements.failure = ""
    return htf.PhaseResult.CONTINUE


PHASES = (read_identity, provision, flash_and_verify)


def provisioning_phases(plug: type[EdgelineStation], *, assigned: bool = False) -> list[htf.PhaseDescriptor]:
    """The phases, bound to a configured plug (from `station_plug`); `assigned` adds `wait_assigned`."""
    return [phase.with_plugs(station=plug) for phase in (*PHASES, *((wait_assigned,) if assigned else ()))]
