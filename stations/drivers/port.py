"""What every device driver is and what every driver's simulator offers: the ports of `stations.drivers`.

Responsible for: `DeviceDriver` (what a station needs from a device), `DeviceInfo` (what a device says
about itself), `DriverFactory` (what an `edgeline.drivers` entry point builds), and the simulator
contract: `SimulatedUnit` / `DeviceFactory` (what the fleet and tests need from a simulator) and
`SimulatorKit` (how the shared conformance tests drive one driver family against its simulator).
Not responsible for: any command set (`stations.drivers.<family>.driver`), finding drivers
(`stations.drivers.registry`) or serial I/O (`stations.link`). docs/writing-a-device-driver.md explains it.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, Protocol, TypeVar


@dataclass(frozen=True, slots=True)
class DeviceInfo:
    """What the device reports about itself, as raw strings (parse with `DeviceIdentity.parse`)."""

    serial: str
    mac: str
    model: str
    firmware: str


class DeviceDriver(ABC):
    """Port: what a station needs from a device."""

    @abstractmethod
    def identify(self) -> DeviceInfo:
        """Ask the device for its serial, MAC, model and firmware version."""

    @abstractmethod
    def write_config(self, path: str, content: bytes) -> str:
        """Write `content` at `path` on the device; return the verified read-back SHA-256 hex.

        Raises FlashError unless the device's read-back of the stored file equals SHA-256(content).
        """

    @abstractmethod
    def reboot(self) -> None:
        """Ask the device to reboot (it then boots with the committed config)."""

    @abstractmethod
    def close(self) -> None:
        """Release the link."""


DriverFactory = Callable[[str], DeviceDriver]


class SimulatedUnit(Protocol):
    """What the fleet and the conformance tests need from a simulator on a pseudo-terminal."""

    @property
    def port(self) -> str: ...

    def start(self) -> Any: ...

    def stop(self) -> None: ...

    @property
    def flash_dir(self) -> Path: ...

    def flashed_files(self) -> dict[str, bytes]: ...


class DeviceFactory(Protocol):
    """The constructor shape every simulator shares (`SimulatedDevice`, `SimulatedConsole`)."""

    def __call__(
        self,
        serial: str,
        mac: str,
        model: str,
        firmware: str,
        flash_dir: Path,
        *,
        on_boot: Callable[[Path], None] | None = ...,
        baud: int | None = ...,
    ) -> SimulatedUnit: ...


SimT = TypeVar("SimT", bound=SimulatedUnit)
Arm = Callable[[SimT], None]


@dataclass(frozen=True)
class SimulatorKit(Generic[SimT]):
    """How the shared conformance tests drive one driver family against its own simulator.

    Each driver package offers one from `<package>.conformance.conformance_kit()`. `open_driver` builds
    the family's driver on a simulator's port with short test timeouts and the credentials the
    simulator accepts. Each `Arm` sets faults on a simulator before an operation: `unplug_mid_flash`
    makes it vanish after the first chunks of a write; every `unverifiable` one makes the stored
    file's read-back disagree with what was sent; every `recoverable` one is cured by the driver's retries.
    """

    simulator: Callable[..., SimT]
    open_driver: DriverFactory
    unplug_mid_flash: Arm[SimT]
    unverifiable: Mapping[str, Arm[SimT]]
    recoverable: Mapping[str, Arm[SimT]] = field(default_factory=dict)


class _HasFaults(Protocol):
    @property
    def faults(self) -> Any: ...


def arm(faults: object) -> Arm[Any]:
    """An `Arm` that switches on every field of `faults` (a simulator's faults dataclass) on `sim.faults`."""

    def switch_on(sim: _HasFaults) -> None:
        sim.faults.__dict__.update(faults.__dict__)

    return switch_on


def arm_each(table: Mapping[str, object]) -> dict[str, Arm[Any]]:
    """`arm` over a table of named fault sets, for `SimulatorKit.unverifiable` / `.recoverable`."""
    return {name: arm(faults) for name, faults in table.items()}
