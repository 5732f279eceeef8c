"""Composition root of the DPS + IoT Hub emulator: configuration, wiring, start and stop.

One port serves the DPS service API, the DPS device API and the control API (their paths do not
collide). Each emulated IoT hub gets its own HTTPS port, because `azure-iot-hub` addresses a hub as
`HostName=127.0.0.1:PORT` and signs `sr` with that address, so the port is what tells hubs apart.
Not responsible for: any route's behaviour (the *_api modules) or the command line (cli.emulator_cmd).
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.domain.keys import SecretKey
from pipeline.emulator import records, tls
from pipeline.emulator.auth import check_service_token
from pipeline.emulator.bulk import BulkApi
from pipeline.emulator.control_api import ControlApi, is_control
from pipeline.emulator.device_api import DeviceApi
from pipeline.emulator.http import App, EmulatorHTTPServer, Request, Response, Router, serve_in_background
from pipeline.emulator.hub_api import HubApi
from pipeline.emulator.hub_registry import HubRegistry
from pipeline.emulator.limits import FaultInjector, FaultSettings, RateLimiter
from pipeline.emulator.provisioning import Provisioner
from pipeline.emulator.service_api import SERVICE_API_VERSIONS, ServiceApi, check_api_version
from pipeline.emulator.store import DpsState
from pipeline.emulator.wire import ApiError, error_body


@dataclass(frozen=True)
class EmulatorConfig:
    """Settings of one emulator instance. `port=0` (and empty `hub_ports`) pick free ports."""

    host: str = "127.0.0.1"
    port: int = 0
    id_scope: str = "0ne00000001"
    hubs: tuple[str, ...] = ("edgeline-hub-1.azure-devices.net",)
    allocation_policy: str = "hashed"
    service_policy_name: str = "provisioningserviceowner"
    service_key: SecretKey | None = None
    operations_per_minute: int = 1000
    registrations_per_minute: int = 1000
    polls_per_device_per_10s: int = 5
    assign_delay_seconds: float = 0.0
    tls: bool = False
    hub_policy_name: str = "iothubowner"
    hub_ports: tuple[int, ...] = ()
    cert_dir: str | None = None
    state_file: str | None = None
    fault_seed: int | None = None


def render_dps_error(error: ApiError) -> Response:
    """ProvisioningServiceErrorDetails + `x-ms-error-code` (azure-notes §1.2, §1.7)."""
    return Response(
        error.status, error_body(error.error_code, error.message), {"x-ms-error-code": str(error.error_code)}
    )


def _advertised(host: str) -> str:
    return "127.0.0.1" if host in ("0.0.0.0", "", "::") else host


@dataclass
class RunningEmulator:
    """A started emulator: where to reach it, how to drive it, and `stop()`."""

    config: EmulatorConfig
    service_key: SecretKey
    state: DpsState
    hub_registry: HubRegistry
    faults: FaultInjector
    limiters: list[RateLimiter]
    tls_files: tls.TlsFiles
    dps_server: EmulatorHTTPServer
    hub_servers: dict[str, EmulatorHTTPServer] = field(default_factory=dict)
    hub_keys: dict[str, SecretKey] = field(default_factory=dict)

    @property
    def id_scope(self) -> str:
        return self.config.id_scope

    @property
    def port(self) -> int:
        return int(self.dps_server.server_address[1])

    @property
    def host_name(self) -> str:
        """The DPS host as clients address it: `host:port`."""
        return f"{_advertised(self.config.host)}:{self.port}"

    @property
    def device_endpoint(self) -> str:
        """The global endpoint for devices (IoT Edge `global_endpoint`)."""
        return f"{'https' if self.config.tls else 'http'}://{self.host_name}"

    @property
    def service_connection_string(self) -> str:
        """DPS service connection string; plain-HTTP endpoints carry the scheme (azure-notes §9)."""
        host = self.host_name if self.config.tls else f"http://{self.host_name}"
        return (
            f"HostName={host};SharedAccessKeyName={self.config.service_policy_name};"
            f"SharedAccessKey={self.service_key.reveal_base64()}"
        )

    @property
    def ca_file(self) -> str:
        """PEM of the CA that signed the HTTPS certificate (for REQUESTS_CA_BUNDLE)."""
        return str(self.tls_files.ca_file)

    def hub_port(self, hub_name: str) -> int:
        return int(self._hub_server(hub_name).server_address[1])

    def hub_connection_string(self, hub_name: str) -> str:
        """`HostName=127.0.0.1:PORT;SharedAccessKeyName=iothubowner;SharedAccessKey=...` for one hub."""
        self._hub_server(hub_name)
        return (
            f"HostName={_advertised(self.config.host)}:{self.hub_port(hub_name)};"
            f"SharedAccessKeyName={self.config.hub_policy_name};"
            f"SharedAccessKey={self.hub_keys[hub_name.lower()].reveal_base64()}"
        )

    def _hub_server(self, hub_name: str) -> EmulatorHTTPServer:
        server = self.hub_servers.get(hub_name.lower())
        if server is None:
            raise KeyError(f"{hub_name!r} is not a hub of this emulator; hubs: {', '.join(self.config.hubs)}")
        return server

    def set_faults(self, **settings: Any) -> None:
        """Switch faults: latency_ms, error_rate_5xx, throttle, drop_connections_rate (others reset)."""
        self.faults.set(FaultSettings.from_json(settings))

    def reset(self) -> None:
        """Forget enrollments, registrations, hub devices, quota counters and faults."""
        self.state.reset()
        self.hub_registry.reset()
        for limiter in self.limiters:
            limiter.reset()
        self.faults.set(FaultSettings())

    def dump(self) -> dict[str, Any]:
        """Everything the emulator holds, keys removed."""
        snapshot = self.state.snapshot()
        for name in ("enrollments", "enrollmentGroups"):
            snapshot[name] = [records.without_keys(r) for r in snapshot[name]]
        return {
            "dps": snapshot,
            "hubs": self.hub_registry.snapshot(),
            "faults": self.faults.settings.to_json(),
        }

    def stop(self) -> None:
        """Stop every server, close every connection, save the state file if configured."""
        for server in [self.dps_server, *self.hub_servers.values()]:
            server.close()
        if self.config.state_file:
            save_state(Path(self.config.state_file), self.state)


def save_state(path: Path, state: DpsState) -> None:
    """Write the DPS records (keys included) to `path` with mode 0600."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump(state.snapshot(), handle, indent=1)


def _load_state(path: str | None, state: DpsState) -> None:
    if path and Path(path).exists():
        state.restore(json.loads(Path(path).read_text(encoding="utf-8")))


def _service_guard(config: EmulatorConfig, key: SecretKey, operations: RateLimiter) -> Any:
    def guard(request: Request) -> None:
        check_api_version(request, SERVICE_API_VERSIONS)
        check_service_token(request, config.service_policy_name, key)
        operations.take()

    return guard


def _dps_app(
    config: EmulatorConfig, emu_parts: dict[str, Any], endpoint: Any
) -> tuple[App, list[RateLimiter], Provisioner]:
    state: DpsState = emu_parts["state"]
    faults: FaultInjector = emu_parts["faults"]
    operations = RateLimiter(config.operations_per_minute, 60.0, "more than the operations-per-minute quota")
    registrations = RateLimiter(
        config.registrations_per_minute, 60.0, "more than the registrations-per-minute quota"
    )
    polls = RateLimiter(
        config.polls_per_device_per_10s, 10.0, "more than the polls per device per 10 s quota"
    )
    provisioner = Provisioner(
        state, emu_parts["hubs"], config.hubs, config.allocation_policy, config.assign_delay_seconds
    )
    guard = _service_guard(config, emu_parts["service_key"], operations)
    router = Router()
    ServiceApi(state, guard, provisioner.settle).install(router)
    BulkApi(state, guard).install(router)
    DeviceApi(state, provisioner, config.id_scope, registrations, polls, endpoint).install(router)

    def faults_unless_control(request: Request) -> None:
        if not is_control(request):
            faults(request)

    return (
        App(router, render_dps_error, [faults_unless_control]),
        [operations, registrations, polls],
        provisioner,
    )


def start_emulator(config: EmulatorConfig) -> RunningEmulator:
    """Start the DPS port and one HTTPS port per hub on background threads; return when listening."""
    if not config.hubs:
        raise ValueError("the emulator needs at least one IoT hub host name")
    if config.hub_ports and len(config.hub_ports) != len(config.hubs):
        raise ValueError("hub_ports must list one port per hub (or be empty for free ports)")
    cert_dir = Path(config.cert_dir or tempfile.mkdtemp(prefix="edgeline-emulator-"))
    tls_files = tls.generate(cert_dir, config.hubs)
    parts: dict[str, Any] = {
        "state": DpsState(),
        "faults": FaultInjector(config.fault_seed),
        "hubs": HubRegistry(config.hubs),
        "service_key": config.service_key or SecretKey.generate(),
    }
    _load_state(config.state_file, parts["state"])
    holder: list[RunningEmulator] = []
    app, limiters, _ = _dps_app(config, parts, lambda: holder[0].device_endpoint)
    context = tls_files.server_context() if config.tls else None
    dps_server = EmulatorHTTPServer((config.host, config.port), app, context)
    emulator = RunningEmulator(
        config,
        parts["service_key"],
        parts["state"],
        parts["hubs"],
        parts["faults"],
        limiters,
        tls_files,
        dps_server,
    )
    holder.append(emulator)
    ControlApi(parts["faults"], emulator.dump, emulator.reset).install(app.router)
    try:
        _start_hubs(emulator, tls_files)
    except OSError:
        emulator.stop()
        raise
    serve_in_background(dps_server, "emulator-dps")
    return emulator


def _start_hubs(emulator: RunningEmulator, tls_files: tls.TlsFiles) -> None:
    config = emulator.config
    ports = config.hub_ports or (0,) * len(config.hubs)
    for hub_name, port in zip(config.hubs, ports, strict=True):
        key = SecretKey.generate()
        app = HubApi(emulator.hub_registry, hub_name, config.hub_policy_name, key).app(emulator.faults)
        server = EmulatorHTTPServer((config.host, port), app, tls_files.server_context())
        emulator.hub_keys[hub_name.lower()] = key
        emulator.hub_servers[hub_name.lower()] = server
        serve_in_background(server, f"emulator-hub-{hub_name}")
