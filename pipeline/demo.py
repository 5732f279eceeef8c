"""`edgeline demo`: a whole simulated line on one machine, built from the same parts as production.

Starts what is not configured (an embedded MQTT broker, a SQLite file, always the DPS + IoT Hub
emulator), the central workers, K stations and N simulated devices on real pseudo-terminals, then
watches the database until every unit is `assigned` (or the time is up).

Without a configured database the demo writes the default one, `<state_dir>/edgeline.db`
(`.edgeline/edgeline.db` in the current folder), so that `edgeline audit ...` run afterwards in the same
folder shows its units. Each run replaces the previous demo's file (the master key is new per run), and
refuses to touch a database file that a demo did not create (a marker file beside it tells them apart).
Not responsible for: drawing progress (the CLI module does that from the snapshots this yields).
"""

from __future__ import annotations

import base64
import secrets
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, ExitStack, contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

from pipeline.azure.dps_device import HttpDeviceRegistrar
from pipeline.azure.hub_device import HttpModuleReporter
from pipeline.azure.hub_registry import AzureHubRegistry
from pipeline.bootstrap import Pipeline, build_pipeline
from pipeline.bus.embedded import EmbeddedBroker
from pipeline.config import Settings
from pipeline.config_check import validate_for
from pipeline.crypto.station_key import StationKeyPair
from pipeline.db import migrate
from pipeline.domain.identity import DeviceIdentity
from pipeline.emulator.server import EmulatorConfig, RunningEmulator, start_emulator
from pipeline.mes.stub import StubMes
from pipeline.service.unit_of_work import StationRecord
from stations.runtime.config import StationConfig
from stations.runtime.process import StationProcess, start_station
from stations.runtime.results import PortResult
from stations.simulation.boot import EdgeRuntime
from stations.simulation.edge_runtime import SimulatedEdgeRuntime
from stations.simulation.fleet import DeviceSpec, SimulatedFleet, make_devices

DEMO_HUBS = ("edgeline-hub-1.azure-devices.net", "edgeline-hub-2.azure-devices.net")
DEMO_MARKER_SUFFIX = ".demo"  # `edgeline.db.demo` beside the database says a demo wrote it


class DemoError(RuntimeError):
    """The demo cannot start; the message says what to change."""


@dataclass(frozen=True, slots=True)
class DemoOptions:
    """What `edgeline demo` was asked to run."""

    units: int = 10
    stations: int = 2
    fixtures: int = 4
    keep_devices: Path | None = None
    timeout: float | None = None
    baud: int | None = None
    approval: bool = False  # ask a stub MES (pipeline.mes.stub) before each unit gets its key
    # web: given the database URL once it is migrated; the context it returns lives as long as the run.
    with_database: Callable[[Settings], AbstractContextManager[object]] | None = None


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Progress: unit counts by state, station results so far, seconds since start."""

    counts: dict[str, int]
    results: int
    failed_results: int
    elapsed: float


@dataclass(frozen=True, slots=True)
class DemoReport:
    """The outcome: every unit's final state and the database it is recorded in."""

    ok: bool
    units: int
    counts: dict[str, int]
    elapsed: float
    database_url: str
    station_results: list[PortResult]
    registration_ids: list[str]
    target: str = "assigned"  # edge: "online" when the liveness check is on


def demo_settings(
    base: Settings, *, workdir: Path, broker_url: str, embedded: bool, run_id: str, emulator: RunningEmulator
) -> Settings:
    """Settings for a demo run: the emulator's DPS, a run-private topic root, a throw-away master key."""
    emu = emulator
    return replace(
        base,
        state_dir=workdir,
        database_url=base.database_url or f"sqlite:///{workdir / 'edgeline.db'}",
        mqtt_url=broker_url,
        mqtt_shared_subscriptions=base.mqtt_shared_subscriptions and not embedded,
        mqtt_protocol="3.1.1" if embedded else base.mqtt_protocol,  # the embedded broker speaks 3.1.1
        topic_root=f"{base.topic_root}-demo-{run_id}",
        dps_connection_string=emu.service_connection_string,
        dps_id_scope=emu.id_scope,
        dps_global_endpoint=emu.device_endpoint,
        iot_hubs=DEMO_HUBS,
        master_key=base64.b64encode(secrets.token_bytes(32)).decode("ascii"),
        master_key_file="",
        confirm_interval_seconds=0.5,
        confirm_backoff_initial_seconds=0.5,
        confirm_backoff_max_seconds=5.0,
        reconcile_interval_seconds=2.0,
        reconcile_stuck_seconds=max(base.reconcile_stuck_seconds, 20.0),
        online_check_interval_seconds=min(base.online_check_interval_seconds, 1.0),
    )


def _edge_runtime(stack: ExitStack, settings: Settings, emulator: RunningEmulator) -> EdgeRuntime | None:
    """edge: with online_check, simulated devices start an IoT Edge runtime that reports to its hub."""
    if not settings.online_check:
        return None
    hub_urls = {name: f"https://127.0.0.1:{emulator.hub_port(name)}" for name in DEMO_HUBS}
    reporter = HttpModuleReporter(hub_urls, verify=emulator.ca_file)
    stack.callback(reporter.close)
    return SimulatedEdgeRuntime(reporter, "running")


def run_demo(base: Settings, options: DemoOptions, on_progress: Callable[[Snapshot], None]) -> DemoReport:
    """Run the simulated line to completion and report."""
    run_id = secrets.token_hex(3)
    started = time.monotonic()
    if not base.database_url:
        base = replace(base, database_url=fresh_demo_database(base.state_dir, run_id))
    with ExitStack() as stack:
        workdir = stack.enter_context(_workdir())
        broker_url, embedded = base.mqtt_url, not base.mqtt_url
        if embedded:
            broker = EmbeddedBroker()
            broker_url = broker.start()
            stack.callback(broker.stop)
        emulator = start_emulator(EmulatorConfig(id_scope=f"0ne{run_id.upper()}00", hubs=DEMO_HUBS))
        stack.callback(emulator.stop)
        settings = demo_settings(
            base, workdir=workdir, broker_url=broker_url, embedded=embedded, run_id=run_id, emulator=emulator
        )
        if options.approval:
            mes = stack.enter_context(StubMes())
            settings = replace(settings, approval_url=mes.url)
        validate_for(settings, "demo")  # e.g. a DPS endpoint that is not the emulator's
        migrate.upgrade(settings.resolved_database_url())
        if options.with_database is not None:
            stack.enter_context(options.with_database(settings))
        hub = AzureHubRegistry(
            {name: emulator.hub_connection_string(name) for name in DEMO_HUBS}, verify=emulator.ca_file
        )
        pipeline = build_pipeline(
            settings, client_id=f"edgeline-demo-{run_id}-worker", clean_session=True, hub=hub
        )
        stack.callback(pipeline.stop)
        pipeline.start()
        devices = make_devices(options.units, f"DEMO{run_id.upper()}", secrets.token_bytes(2))
        # Real IoT Edge polls every 5 s; the demo polls faster so a short run finishes quickly.
        registrar = HttpDeviceRegistrar(poll_interval=0.2, max_poll_interval=0.5)
        stack.callback(registrar.close)
        runtime = _edge_runtime(stack, settings, emulator)
        stations = _start_stations(
            stack, pipeline, settings, options, devices, workdir, run_id, registrar, runtime
        )
        target = "online" if settings.online_check else "assigned"
        counts = _watch(pipeline, options, stations, started, on_progress, target)
        registration_ids = [_registration_id(settings, d) for d in devices]
        results = [r for s in stations for r in s.results]
        return DemoReport(
            ok=counts.get(target, 0) == options.units,
            units=options.units,
            counts=counts,
            elapsed=time.monotonic() - started,
            database_url=settings.resolved_database_url(),
            station_results=results,
            registration_ids=registration_ids,
            target=target,
        )
    raise AssertionError("unreachable")  # pragma: no cover


def fresh_demo_database(state_dir: Path, run_id: str) -> str:
    """Replace the previous demo's SQLite file in `state_dir` by an empty one; return its URL.

    Refuses (DemoError) if the file exists and was not written by a demo: it may hold a real line's units.
    """
    database = (state_dir / "edgeline.db").resolve()
    marker = database.with_name(database.name + DEMO_MARKER_SUFFIX)
    if database.exists() and not marker.exists():
        raise DemoError(
            f"{database} holds a database `edgeline demo` did not create; run the demo in another folder, "
            "or point state_dir (EDGELINE_STATE_DIR) or database_url (EDGELINE_DATABASE_URL) elsewhere"
        )
    try:
        database.parent.mkdir(parents=True, exist_ok=True)
        marker.write_text(f"written by edgeline demo run {run_id}; replaced by the next demo run\n")
        for suffix in ("", "-wal", "-shm", "-journal"):
            database.with_name(database.name + suffix).unlink(missing_ok=True)
    except OSError as exc:
        raise DemoError(f"cannot write the demo database in {database.parent}: {exc.strerror}") from None
    return f"sqlite:///{database}"


@contextmanager
def _workdir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="edgeline-demo-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def _registration_id(settings: Settings, device: DeviceSpec) -> str:
    return DeviceIdentity.parse(device.serial, device.mac).registration_id(settings.registration_id_template)


def _start_stations(
    stack: ExitStack,
    pipeline: Pipeline,
    settings: Settings,
    options: DemoOptions,
    devices: list[DeviceSpec],
    workdir: Path,
    run_id: str,
    registrar: HttpDeviceRegistrar,
    runtime: EdgeRuntime | None = None,
) -> list[StationProcess]:
    flash_root = options.keep_devices or workdir / "devices"
    flash_root.mkdir(parents=True, exist_ok=True)
    (workdir / "stations").mkdir(mode=0o700, exist_ok=True)
    processes = []
    for index in range(options.stations):
        name = f"S{index + 1}"
        keypair = StationKeyPair.generate()
        key_file = keypair.save(workdir / "stations" / f"{name}.key")
        with pipeline.db.uow() as uow:
            uow.stations.put(
                StationRecord(
                    name=name,
                    line=settings.line,
                    public_key=keypair.public_bytes(),
                    created_at=datetime.now(UTC),
                )
            )
            uow.commit()
        fleet = SimulatedFleet(
            devices[index :: options.stations],
            workdir / "ports" / name,
            flash_root,
            registrar,
            fixtures=options.fixtures,
            baud=options.baud,
            folder_name=lambda spec: _registration_id(settings, spec),
            runtime=runtime,
        )
        config = StationConfig(
            name=name,
            line=settings.line,
            key_file=key_file,
            product=settings.product,
            registration_id_template=settings.registration_id_template,
            topic_root=settings.topic_root,
            poll_interval_seconds=0.2,
        )
        station = start_station(
            config,
            settings.mqtt_url,
            watch_dir=workdir / "ports" / name,
            client_id=f"edgeline-demo-{run_id}-{name}",
            clean_session=True,
            on_result=fleet.on_result,
        )
        stack.callback(station.stop)
        stack.callback(fleet.stop)
        fleet.start()
        processes.append(station)
    return processes


def _watch(
    pipeline: Pipeline,
    options: DemoOptions,
    stations: list[StationProcess],
    started: float,
    on_progress: Callable[[Snapshot], None],
    target: str = "assigned",
) -> dict[str, int]:
    timeout = options.timeout or max(120.0, options.units * 1.5)
    while True:
        with pipeline.db.uow() as uow:
            counts = uow.units.count_by_state()
        results = [r for s in stations for r in s.results]
        elapsed = time.monotonic() - started
        on_progress(
            Snapshot(
                counts=counts,
                results=len(results),
                failed_results=sum(r.outcome != "PASS" for r in results),
                elapsed=elapsed,
            )
        )
        if counts.get(target, 0) >= options.units or elapsed > timeout:
            return counts
        time.sleep(0.5)
