"""Shared pieces of the service-layer integration tests (tests/integration/test_service_*.py).

Everything here is real: a migrated SQLite/PostgreSQL database (the `db_url` fixture of tests/conftest.py),
the DPS emulator over HTTP, the real Sealer and station envelopes. The only thing a test controls is the
clock the `Context` is given (an injected dependency, as production's `utcnow`), so time can be moved.
"""

from __future__ import annotations

import base64
import os
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from pipeline.azure.dps_device import HttpDeviceRegistrar
from pipeline.azure.dps_service import HttpDpsClient
from pipeline.azure.pacing import Backoff
from pipeline.azure.ports import AzureError
from pipeline.bus.cloudevents import Envelope, decode, encode
from pipeline.bus.topics import Topics
from pipeline.config import load_settings
from pipeline.crypto.envelope import open_from_pipeline
from pipeline.crypto.sealing import Sealer
from pipeline.crypto.station_key import StationKeyPair
from pipeline.db.audit import AuditRecordView, audit_records
from pipeline.db.session import Database
from pipeline.domain.events import ConfigFlashed, FlashConfig, Message, UnitEnrolled, UnitKeyed, UnitScanned
from pipeline.domain.identity import DeviceIdentity
from pipeline.domain.keys import SecretKey
from pipeline.domain.model import Unit
from pipeline.edgeconfig.model import ParsedProvisioning
from pipeline.edgeconfig.parse import parse_provisioning
from pipeline.emulator.server import EmulatorConfig, RunningEmulator, start_emulator
from pipeline.service import configuring, enrolling, flashing, keying
from pipeline.service.common import device_key
from pipeline.service.context import Context
from pipeline.service.unit_of_work import StationRecord

HUB = "edgeline-hub-1.azure-devices.net"
LINE = "line1"


class CountingTransport(httpx.HTTPTransport):
    """A real HTTP transport that also counts requests per (method, path suffix)."""

    def __init__(self) -> None:
        super().__init__()
        self.requests: list[tuple[str, str]] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.requests.append((request.method, request.url.path))
        return super().handle_request(request)

    def count(self, method: str, path_part: str = "") -> int:
        return sum(1 for m, p in self.requests if m == method and path_part in p)


class Clock:
    """A settable wall clock for the Context (timezone-aware UTC)."""

    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


@dataclass
class World:
    """One test's pipeline: database, emulator, clock, and a factory of Contexts over them."""

    db: Database
    emulator: RunningEmulator
    clock: Clock
    topic_root: str
    made: list[Context] = field(default_factory=list)
    station_keys: dict[str, StationKeyPair] = field(default_factory=dict)

    def context(
        self, mode: str = "group", *, transport: httpx.BaseTransport | None = None, **overrides: Any
    ) -> Context:
        """A Context on this world's database and emulator; `overrides` go to load_settings."""
        values: dict[str, Any] = {
            "enrollment_mode": mode,
            "line": LINE,
            "topic_root": self.topic_root,
            "dps_connection_string": self.emulator.service_connection_string,
            "dps_id_scope": self.emulator.id_scope,
            "dps_global_endpoint": self.emulator.device_endpoint,
            "master_key": base64.b64encode(os.urandom(32)).decode("ascii"),
            "confirm_backoff_initial_seconds": 0.0,
        }
        settings = load_settings(env={}, **{**values, **overrides})
        dps = HttpDpsClient.from_connection_string(
            settings.dps_connection_string,
            operations_per_minute=60_000,
            burst=100,
            timeout=5.0,
            backoff=Backoff(base=0.01, cap=0.02, max_attempts=2),
            transport=transport,
        )
        ctx = Context(
            settings=settings,
            uow_factory=self.db.uow,
            sealer=Sealer(settings.load_master_key()),
            dps=dps,
            hub=None,
            topics=Topics(self.topic_root),
            clock=self.clock,
        )
        self.made.append(ctx)
        return ctx

    def line_ready(self, mode: str = "group", **overrides: Any) -> Context:
        """A Context whose line can issue configs: station S1 registered and, in group mode, the group
        created (a group-mode scan goes on to `config_issued` in the keyer's transaction)."""
        ctx = self.context(mode, **overrides)
        self.add_station(ctx)
        if mode == "group":
            enrolling.ensure_group(ctx)
        return ctx

    def add_station(self, ctx: Context, name: str = "S1", line: str = LINE) -> StationKeyPair:
        """Register a station (as `edgeline station add` does) and keep its keypair."""
        keypair = StationKeyPair.generate()
        with ctx.uow_factory() as uow:
            uow.stations.put(StationRecord(name, line, keypair.public_bytes(), self.clock()))
            uow.commit()
        self.station_keys[name] = keypair
        return keypair

    def unit(self, registration_id: str) -> Unit:
        with self.db.uow() as uow:
            unit = uow.units.get(registration_id)
        assert unit is not None, f"no unit {registration_id}"
        return unit

    def outbox(self) -> list[tuple[str, Envelope]]:
        """Pending outbox rows as (topic, decoded envelope), oldest first."""
        with self.db.uow() as uow:
            items = uow.outbox.pending(10_000)
        return [(item.topic, decode(item.payload)) for item in items]

    def outbox_of(self, kind: type[Message], registration_id: str | None = None) -> list[tuple[str, Any]]:
        """Pending outbox messages of one type (and unit), as (topic, message)."""
        return [
            (topic, env.message)
            for topic, env in self.outbox()
            if isinstance(env.message, kind)
            and (registration_id is None or getattr(env.message, "registration_id", None) == registration_id)
        ]

    def audit(self, registration_id: str | None = None) -> list[AuditRecordView]:
        return [r for r in audit_records(self.db) if registration_id in (None, r.registration_id)]

    def config_of(self, registration_id: str) -> ParsedProvisioning:
        """Open the latest FlashConfig for the unit with its station's key and parse the config."""
        commands = self.outbox_of(FlashConfig, registration_id)
        assert commands, f"no FlashConfig for {registration_id}"
        command: FlashConfig = commands[-1][1]
        content = open_from_pipeline(
            self.station_keys[command.station],
            command.envelope,
            station_name=command.station,
            registration_id=registration_id,
        )
        return parse_provisioning(content, command.config_path)


@pytest.fixture(scope="session")
def shared_emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningEmulator]:
    """One emulator for the session; `world` resets it before each test."""
    certs = tmp_path_factory.mktemp("emulator-certs")
    emulator = start_emulator(EmulatorConfig(hubs=(HUB,), cert_dir=str(certs), fault_seed=1))
    yield emulator
    emulator.stop()


@pytest.fixture(name="world")
def world_fixture(db_url: str, shared_emulator: RunningEmulator) -> Iterator[World]:
    """A fresh database (both backends), the emulator emptied, and a settable clock."""
    shared_emulator.reset()
    db = Database(db_url)
    w = World(db=db, emulator=shared_emulator, clock=Clock(), topic_root=f"test-{uuid.uuid4().hex[:12]}")
    yield w
    for ctx in w.made:
        ctx.dps.close()
    shared_emulator.reset()
    db.dispose()


# -- messages --------------------------------------------------------------------------------------

_counter = iter(range(1, 1_000_000))


def new_identity() -> tuple[str, str]:
    """A fresh (serial, MAC) pair."""
    n = next(_counter) + (os.getpid() % 1000) * 1_000_000
    mac = ":".join(f"{b:02X}" for b in (0x02, 0xED, *n.to_bytes(4, "big")))
    return f"A{n:09d}", mac


def registration_id(serial: str, mac: str, template: str = "sn-{serial}-mac-{mac}") -> str:
    return DeviceIdentity.parse(serial, mac).registration_id(template)


def scan(
    serial: str | None = None,
    mac: str | None = None,
    *,
    station: str = "S1",
    line: str = LINE,
    port: str = "/dev/ttyUSB0",
    rid: str | None = None,
) -> UnitScanned:
    """A UnitScanned as a station would send it (registration ID built by the default template)."""
    if serial is None or mac is None:
        serial, mac = new_identity()
    return UnitScanned(
        registration_id=rid if rid is not None else registration_id(serial, mac),
        serial=serial,
        mac=mac,
        line=line,
        station=station,
        port=port,
    )


def envelope(
    message: Message, *, source: str = "edgeline/stations/S1", event_id: str | None = None
) -> Envelope:
    """Encode and decode `message`, exactly as it would arrive from the bus."""
    return decode(encode(message, source=source, event_id=event_id)[1])


Handler = Callable[[Context, Envelope], None]


def deliver(ctx: Context, handler: Handler, message: Message, **kwargs: Any) -> Envelope:
    env = envelope(message, **kwargs)
    handler(ctx, env)
    return env


# -- driving units along the happy path --------------------------------------------------------------


def to_keyed(ctx: Context, message: UnitScanned | None = None) -> str:
    message = message or scan()
    deliver(ctx, keying.handle_scanned, message)
    return message.registration_id


def to_enrolled(ctx: Context, message: UnitScanned | None = None) -> str:
    rid = to_keyed(ctx, message)
    deliver(ctx, enrolling.handle_keyed, UnitKeyed(registration_id=rid, mode=ctx.settings.enrollment_mode))
    return rid


def to_config_issued(ctx: Context, message: UnitScanned | None = None) -> str:
    rid = to_enrolled(ctx, message)
    deliver(
        ctx,
        configuring.handle_enrolled,
        UnitEnrolled(registration_id=rid, mode=ctx.settings.enrollment_mode, enrollment_id=rid),
    )
    return rid


def to_flashed(world: World, ctx: Context, message: UnitScanned | None = None) -> str:
    rid = to_config_issued(ctx, message)
    unit = world.unit(rid)
    assert unit.config_sha256 is not None
    deliver(
        ctx,
        flashing.handle_flashed,
        ConfigFlashed(
            registration_id=rid, station=unit.station, port=unit.port or "", config_sha256=unit.config_sha256
        ),
    )
    return rid


# -- devices registering with the emulated DPS ----------------------------------------------------------


@pytest.fixture(name="registrar")
def registrar_fixture() -> Iterator[HttpDeviceRegistrar]:
    """A device-side DPS client polling fast (the emulator answers at once)."""
    device = HttpDeviceRegistrar(poll_interval=0.05, max_poll_interval=0.2)
    yield device
    device.close()


def register(world: World, registrar: HttpDeviceRegistrar, rid: str, key: SecretKey) -> str:
    """Register as the device would at first boot; 'unauthorized' when DPS answers 401."""
    try:
        result = registrar.register(
            global_endpoint=world.emulator.device_endpoint,
            id_scope=world.emulator.id_scope,
            registration_id=rid,
            key=key,
            timeout=20,
        )
    except AzureError as exc:
        if exc.status == 401:
            return "unauthorized"
        raise
    return result.status


def flashed_unit_key(world: World, ctx: Context) -> tuple[str, SecretKey]:
    """Take a new unit to `flashed`; return its registration ID and the key flashed onto it."""
    rid = to_flashed(world, ctx)
    with world.db.uow() as uow:
        return rid, device_key(uow, ctx, world.unit(rid))
