"""How the shared driver conformance tests drive `LineProtocolDriver` against `SimulatedDevice`.

Responsible for: the test-speed driver options and the simulator faults behind each conformance case
(tests/integration/drivers/test_conformance.py). Not responsible for: the cases themselves.
"""

from __future__ import annotations

from stations.drivers.line_protocol.driver import LineProtocolDriver
from stations.drivers.line_protocol.simulated_firmware import Faults
from stations.drivers.line_protocol.simulator import SimulatedDevice
from stations.drivers.port import DeviceDriver, SimulatorKit, arm, arm_each
from stations.link import PySerialLink

_RECOVERABLE = {
    "noise": Faults(noise=True),
    "dropped reply": Faults(drop_replies=1),
    "dropped replies": Faults(drop_replies=2),
    "duplicated replies": Faults(duplicate_replies=True),
    "corrupted reply": Faults(corrupt_replies=1),
    "slow device": Faults(latency_s=0.03),
    "noise and duplicates": Faults(noise=True, duplicate_replies=True),
}
_UNVERIFIABLE = {
    "corrupted write": Faults(corrupt_write=True),
    "wrong read-back hash": Faults(wrong_hash=True),
    "corrupted write with noise": Faults(corrupt_write=True, noise=True, duplicate_replies=True),
}


def _open_driver(port: str) -> DeviceDriver:
    return LineProtocolDriver(PySerialLink(port), reply_timeout=0.2, retries=2, flash_attempts=3)


def conformance_kit() -> SimulatorKit[SimulatedDevice]:
    """The line-protocol family's kit; configs fit one or two DATA lines, so it vanishes on the first."""
    return SimulatorKit(
        simulator=SimulatedDevice,
        open_driver=_open_driver,
        unplug_mid_flash=arm(Faults(disconnect_after_chunks=1)),
        unverifiable=arm_each(_UNVERIFIABLE),
        recoverable=arm_each(_RECOVERABLE),
    )
