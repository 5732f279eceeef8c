"""The runners of `edgeline station` (arguments: pipeline.cli.station_cmd); imported only when one runs."""

from __future__ import annotations

import argparse
import hashlib
import logging
import secrets
import sys
import threading
from datetime import UTC, datetime

from pipeline.bus.ports import BusError
from pipeline.bus.topics import TopicError, check_segment
from pipeline.cli.common import settings_from, stop_event_on_signals
from pipeline.cli.driver_options import driver_factory, sim_device_factory
from pipeline.cli.main import EXIT_FAILURE, EXIT_OK, CommandError
from pipeline.cli.station_broker import write_broker_access
from pipeline.cli.station_labels import start_labels
from pipeline.cli.station_output import StationOutput
from pipeline.config import Settings
from pipeline.config_check import validate_for
from pipeline.crypto.station_key import StationKeyError, StationKeyPair, public_key_from_text
from pipeline.service.actors import cli_identity
from pipeline.service.unit_of_work import StationRecord
from stations.drivers.port import DeviceFactory
from stations.errors import LinkError
from stations.runtime.config import StationConfig
from stations.runtime.process import StationProcess
from stations.runtime.spool import SpoolError
from stations.runtime.usb_ports import UsbMatch, UsbSpecError
from stations.simulation.fleet import DeviceSpec, SimulatedFleet, make_devices

log = logging.getLogger(__name__)
# A malformed broker URL (EDGELINE_MQTT_URL). An unreachable broker is no error: the station serves its
# ports and spools events until the broker is back (a station PC often boots before the broker).
EXIT_BAD_BROKER_URL = 3


def init(args: argparse.Namespace) -> int:
    """Create the station's key pair and print its public key."""
    if args.key_file.exists() and not args.force:
        raise CommandError(f"{args.key_file} exists; use --force to replace it", exit_code=2)
    keypair = StationKeyPair.generate()
    try:
        args.key_file.parent.mkdir(parents=True, exist_ok=True)
        keypair.save(args.key_file, overwrite=args.force)
    except (OSError, StationKeyError) as exc:
        raise CommandError(f"cannot write {args.key_file}: {exc}") from None
    print(keypair.public_text())
    return EXIT_OK


def add(args: argparse.Namespace) -> int:
    """Register a station with the pipeline."""
    from pipeline.db.session import Database

    settings = settings_from(args)
    line = args.line or settings.line
    try:
        check_segment("station", args.name)
        check_segment("line", line)
        public = public_key_from_text(args.public_key)
    except (TopicError, StationKeyError) as exc:
        raise CommandError(str(exc), exit_code=2) from None
    db = Database(settings.resolved_database_url())
    try:
        with db.uow() as uow:
            uow.stations.put(
                StationRecord(name=args.name, line=line, public_key=public, created_at=datetime.now(UTC))
            )
            uow.audit.append(
                at=datetime.now(UTC),
                kind="station.added",
                actor=cli_identity(),
                registration_id=None,
                detail={"station": args.name, "line": line},
            )
            uow.commit()
    finally:
        db.dispose()
    print(f"station {args.name} (line {line}) registered")
    write_broker_access(args, line, settings.topic_root)
    return EXIT_OK


def run(args: argparse.Namespace) -> int:
    """Run the station until stopped (or until every simulated device is done)."""
    settings = settings_from(args)
    validate_for(settings, "station")  # broker URL; DPS service/endpoint pairing where both are set
    if not args.port and not args.watch_dir and not args.usb:
        raise CommandError("give at least one --port, --usb or a --watch-dir", exit_code=2)
    usb = _usb_matches(args.usb)
    config = StationConfig(
        name=args.name,
        line=args.line or settings.line,
        key_file=args.key_file,
        product=settings.product,
        batch=args.batch,
        baudrate=args.baud,
        registration_id_template=settings.registration_id_template,
        topic_root=settings.topic_root,
        flash_timeout_seconds=args.flash_timeout,
        spool_dir=args.spool_dir,
        mac_policy=settings.mac_policy(),
    )
    _check_ports(args.port)
    fleet = _make_fleet(args) if args.simulate else None
    if fleet is not None:
        fleet.prepare()  # before the station watches the folder: stale links from a killed run go
    stop = stop_event_on_signals()
    output = StationOutput(args.name, jsonl=args.jsonl)
    if fleet is not None:
        output.extra.append(fleet.on_result)
    labels = start_labels(settings, config, output)
    try:
        with output:
            return _serve(args, config, settings, usb, output, fleet, stop)
    finally:
        if labels is not None:
            labels.stop()


def _serve(
    args: argparse.Namespace,
    config: StationConfig,
    settings: Settings,
    usb: list[UsbMatch],
    output: StationOutput,
    fleet: SimulatedFleet | None,
    stop: threading.Event,
) -> int:
    from stations.runtime.process import start_station

    mqtt_url = settings.mqtt_url
    try:
        station = start_station(
            config,
            mqtt_url,
            tls=settings.mqtt_tls(),
            ports=args.port,
            watch_dir=args.watch_dir,
            on_result=output.on_result,
            usb=usb,
            on_stage=output.on_stage,
            open_driver=driver_factory(args),
        )
    except BusError as exc:  # only a malformed URL: an unreachable broker is waited for
        raise CommandError(str(exc), exit_code=EXIT_BAD_BROKER_URL) from None
    except (StationKeyError, SpoolError, OSError) as exc:
        raise CommandError(str(exc)) from None
    if station.broker_unreachable is not None:
        print(_offline_notice(station, mqtt_url), file=sys.stderr, flush=True)
    try:
        if fleet is None:
            stop.wait()
            return EXIT_OK
        fleet.start()
        return _wait_for_fleet(args, station, fleet, stop)
    finally:
        if fleet is not None:
            fleet.stop()
        station.stop()


def _offline_notice(station: StationProcess, mqtt_url: str) -> str:
    """The one line saying the station runs without the broker for now, and where events wait."""
    from pipeline.bus.url import parse_mqtt_url

    return (
        f"edgeline station: MQTT broker at {parse_mqtt_url(mqtt_url).url} is unreachable "
        f"({station.broker_unreachable}): serving the ports anyway, spooling events in "
        f"{station.agent.spool.folder} and sending them when it is back"
    )


def _check_ports(ports: list[str]) -> None:
    """Fail fast, in one line, on a port that does not exist or is in use."""
    from stations.link import PySerialLink

    for port in ports:
        try:
            PySerialLink(port).close()
        except LinkError as exc:
            raise CommandError(str(exc), exit_code=2) from None


def _usb_matches(specs: list[str]) -> list[UsbMatch]:
    from stations.runtime.usb_ports import parse_usb_spec

    try:
        return [parse_usb_spec(spec) for spec in specs]
    except UsbSpecError as exc:
        raise CommandError(str(exc), exit_code=2) from None


def _make_fleet(args: argparse.Namespace) -> SimulatedFleet:
    from pipeline.azure.dps_device import HttpDeviceRegistrar

    if args.watch_dir is None:
        raise CommandError(
            "--simulate needs --watch-dir (simulated devices are plugged in there)", exit_code=2
        )
    prefix = args.serial_prefix or secrets.token_hex(3).upper()
    # A given prefix gives the same MACs every run: a restarted station re-plugs the same devices
    # (rework), not new devices whose serials collide with the old ones (an identity conflict).
    stable = hashlib.sha256(prefix.encode()).digest()[:2]
    mac_prefix = stable if args.serial_prefix else secrets.token_bytes(2)
    devices = make_devices(args.simulate, prefix, mac_prefix)
    factory = sim_device_factory(args)
    if args.sim_hostile:
        devices, factory = _hostile(args, devices, factory)
    return SimulatedFleet(
        devices,
        args.watch_dir,
        args.devices_dir or args.watch_dir.parent / "devices",
        HttpDeviceRegistrar(),
        fixtures=args.fixtures,
        device_factory=factory,
    )


def _hostile(
    args: argparse.Namespace, devices: list[DeviceSpec], factory: DeviceFactory
) -> tuple[list[DeviceSpec], DeviceFactory]:
    """--sim-hostile: every Nth simulated device misbehaves (fault tests, station acceptance)."""
    from stations.simulation import hostile

    try:
        kinds = hostile.parse_kinds(args.sim_hostile)
    except hostile.HostileSpecError as exc:
        raise CommandError(str(exc), exit_code=2) from None
    plan = hostile.hostile_plan(len(devices), kinds, args.sim_hostile_every)
    devices = hostile.apply_identities(devices, plan)
    return devices, hostile.hostile_factory(factory, hostile.line_faults(devices, plan))


def _wait_for_fleet(
    args: argparse.Namespace, station: StationProcess, fleet: SimulatedFleet, stop: threading.Event
) -> int:
    tally = fleet.tally
    while not stop.wait(0.5):
        if tally.seen >= tally.expected or tally.error is not None:
            break
    print(f"station {args.name}: {tally.summary()}", flush=True)
    if tally.error is not None:
        print(
            f"edgeline station: the simulated fleet stopped feeding devices ({tally.error}); "
            "fix the cause and run again",
            file=sys.stderr,
            flush=True,
        )
    still_booting = fleet.wait_for_boots(timeout=120.0)
    if still_booting:
        print(
            f"station {args.name}: {still_booting} simulated device(s) still registering with DPS",
            file=sys.stderr,
        )
    complete = tally.error is None and tally.seen >= tally.expected
    return EXIT_OK if complete and tally.failed == 0 else EXIT_FAILURE
