"""Ports to Azure: the DPS service API, the DPS device API, and the IoT Hub registry.

Callers never import httpx or azure-iot-hub; adapters raise only the errors defined here.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import Any

from pipeline.domain.keys import SecretKey


class AzureError(RuntimeError):
    """A DPS or IoT Hub call failed. `retryable` says whether trying again later may help."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        error_code: int | None = None,
        retryable: bool = False,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.error_code = error_code
        self.retryable = retryable
        self.retry_after = retry_after


class EnrollmentConflict(AzureError):
    """An enrollment exists with a different key than ours: an operator must decide."""


@dataclass(frozen=True, slots=True)
class IndividualEnrollmentSpec:
    """What edgeline asks DPS for, per unit, in individual mode."""

    registration_id: str
    primary_key: SecretKey
    secondary_key: SecretKey
    device_id: str | None = None
    iot_edge: bool = True
    tags: dict[str, Any] = field(default_factory=dict)
    iot_hubs: tuple[str, ...] = ()
    allocation_policy: str | None = None
    provisioning_status: str = "enabled"


@dataclass(frozen=True, slots=True)
class EnrollmentGroupSpec:
    """A symmetric-key enrollment group (one per product/line)."""

    group_id: str
    primary_key: SecretKey
    secondary_key: SecretKey
    iot_edge: bool = True
    iot_hubs: tuple[str, ...] = ()
    allocation_policy: str | None = None
    provisioning_status: str = "enabled"


@dataclass(frozen=True, slots=True)
class RegistrationState:
    """DPS's DeviceRegistrationState, the fields edgeline uses."""

    registration_id: str
    status: str  # unassigned | assigning | assigned | failed | disabled
    assigned_hub: str | None = None
    device_id: str | None = None
    substatus: str | None = None
    error_code: int | None = None
    error_message: str | None = None


@dataclass(frozen=True, slots=True)
class EnrollmentInfo:
    """An enrollment as DPS returns it from GET (keys are not returned there)."""

    enrollment_id: str
    provisioning_status: str | None
    etag: str | None
    iot_edge: bool
    raw: dict[str, Any]


class DpsClient(abc.ABC):
    """The DPS service API (enrollment management), authenticated from a connection string."""

    @abc.abstractmethod
    def ensure_enrollment_group(self, spec: EnrollmentGroupSpec) -> None:
        """Create the group or confirm an existing one has our key; EnrollmentConflict if another key."""

    @abc.abstractmethod
    def ensure_individual_enrollments(
        self, specs: list[IndividualEnrollmentSpec]
    ) -> dict[str, AzureError | None]:
        """Create each enrollment (bulk, 10 per call) idempotently; per registration ID: None or its error."""

    @abc.abstractmethod
    def get_individual_enrollment(self, registration_id: str) -> EnrollmentInfo | None: ...

    @abc.abstractmethod
    def get_enrollment_group(self, group_id: str) -> EnrollmentInfo | None: ...

    @abc.abstractmethod
    def get_enrollment_group_keys(self, group_id: str) -> tuple[SecretKey, SecretKey] | None:
        """The group's (primary, secondary) keys as DPS holds them; None if there is no such group."""

    @abc.abstractmethod
    def replace_enrollment_group_keys(
        self, group_id: str, primary: SecretKey, secondary: SecretKey, *, etag: str
    ) -> None:
        """Swap a group's keys, keeping its other fields, only if DPS still has `etag` (412 otherwise)."""

    @abc.abstractmethod
    def set_individual_enrollment_status(self, registration_id: str, status: str) -> None:
        """Enable or disable (revoke) an individual enrollment, keeping its keys."""

    @abc.abstractmethod
    def delete_individual_enrollment(self, registration_id: str) -> None: ...

    @abc.abstractmethod
    def get_registration_state(self, registration_id: str) -> RegistrationState | None:
        """GET /registrations/{id}; None if the device never registered."""

    @abc.abstractmethod
    def query_group_registrations(self, group_id: str, page_size: int = 100) -> list[RegistrationState]:
        """All registration states of a group, a page (one operation) at a time."""

    @abc.abstractmethod
    def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class DeviceRegistrationResult:
    """The final answer of the device registration API."""

    status: str  # assigned | failed | disabled
    assigned_hub: str | None
    device_id: str | None
    error_code: int | None = None
    error_message: str | None = None


class DeviceRegistrar(abc.ABC):
    """The DPS device API: what a device (or a simulated one) does at first boot."""

    @abc.abstractmethod
    def register(
        self,
        *,
        global_endpoint: str,
        id_scope: str,
        registration_id: str,
        key: SecretKey,
        timeout: float = 60.0,
    ) -> DeviceRegistrationResult: ...


@dataclass(frozen=True, slots=True)
class HubDevice:
    """A device identity in an IoT hub registry."""

    device_id: str
    iot_edge: bool
    status: str
    tags: dict[str, Any]


@dataclass(frozen=True, slots=True)
class ModuleTwin:
    """A module twin's properties (e.g. `$edgeAgent`: desired = the deployment, reported = runtime state)."""

    device_id: str
    module_id: str
    desired: dict[str, Any]
    reported: dict[str, Any]
    connection_state: str = "Disconnected"


class HubRegistry(abc.ABC):
    """IoT Hub registry and twins (azure-iot-hub's IoTHubRegistryManager behind this port)."""

    @abc.abstractmethod
    def get_device(self, hub_host: str, device_id: str) -> HubDevice | None: ...

    @abc.abstractmethod
    def update_twin_tags(self, hub_host: str, device_id: str, tags: dict[str, Any]) -> None: ...

    @abc.abstractmethod
    def set_device_status(self, hub_host: str, device_id: str, *, enabled: bool, reason: str = "") -> bool:
        """Enable or disable a device identity (revocation, azure-notes §2.7); False if the hub lacks it.

        A disabled device can no longer connect to its hub, even with a valid key; its identity and
        twin are kept, so enabling restores it as it was.
        """

    def get_module_twin(self, hub_host: str, device_id: str, module_id: str) -> ModuleTwin | None:
        """Read a module twin (`$edgeAgent`, `$edgeHub`); None if the hub has no such device or module.

        Not abstract so that registries without module support keep working; they answer with an error.
        """
        raise AzureError(f"{type(self).__name__} cannot read module twins (IoT hub {hub_host})")
