"""How the shared driver conformance tests drive `LinuxConsoleDriver` against `SimulatedConsole`.

Responsible for: the test-speed driver options, the credentials the simulator accepts, and the
simulator faults behind each conformance case (tests/integration/drivers/test_conformance.py).
Not responsible for: the cases themselves.
"""

from __future__ import annotations

from stations.drivers.linux_console.driver import ConsoleOptions, LinuxConsoleDriver
from stations.drivers.linux_console.simulator import DEFAULT_CREDENTIALS, ConsoleFaults, SimulatedConsole
from stations.drivers.port import DeviceDriver, SimulatorKit, arm, arm_each
from stations.link import PySerialLink

FAST = ConsoleOptions(command_timeout=0.5, prompt_timeout=1.0, chunk_chars=256)
_RECOVERABLE = {
    "noise": ConsoleFaults(noise=True),
    "dropped line": ConsoleFaults(drop_lines=1),
    "dropped lines": ConsoleFaults(drop_lines=3),
    "duplicated lines": ConsoleFaults(duplicate_lines=True),
    "slow device": ConsoleFaults(latency_s=0.05),
    "noise and duplicates": ConsoleFaults(noise=True, duplicate_lines=True),
    "login needs a retry": ConsoleFaults(failed_logins=1),
}
_UNVERIFIABLE = {
    "corrupted write": ConsoleFaults(corrupt_write=True),
    "wrong read-back hash": ConsoleFaults(wrong_hash=True),
    "corrupted write with noise": ConsoleFaults(corrupt_write=True, noise=True, duplicate_lines=True),
}


def _open_driver(port: str) -> DeviceDriver:
    return LinuxConsoleDriver(PySerialLink(port), DEFAULT_CREDENTIALS, FAST)


def conformance_kit() -> SimulatorKit[SimulatedConsole]:
    """The linux-console family's kit; the console vanishes on the second chunk of a write."""
    return SimulatorKit(
        simulator=SimulatedConsole,
        open_driver=_open_driver,
        unplug_mid_flash=arm(ConsoleFaults(disconnect_after_chunks=2)),
        unverifiable=arm_each(_UNVERIFIABLE),
        recoverable=arm_each(_RECOVERABLE),
    )
