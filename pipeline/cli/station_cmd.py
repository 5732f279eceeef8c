"""`edgeline station init|add|run`: a station's identity, its registration, and the station process."""

from __future__ import annotations

import argparse
import hashlib
import logging
import secrets
import sys
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pipeline.bus.ports import BusError
from pipeline.bus.topics import TopicError, check_segment
from pipeline.cli.common import settings_from, stop_event_on_signals
from pipeline.cli.driver_options import add_driver_arguments, driver_factory, sim_device_factory
from pipeline.cli.main import EXIT_FAILURE, EXIT_OK, CommandError
from pipeline.cli.station_broker import add_broker_arguments, write_broker_access
from pipeline.cli.station_output import StationOutput
from pipeline.config import Settings
from pipeline.crypto.station_key import StationKeyError, StationKeyPair, public_key_from_text
from pipeline.service.unit_of_work import StationRecord
from stations.config import StationConfig
from stations.errors import LinkError
from stations.fleet import DeviceFactory, DeviceSpec, SimulatedFleet, make_devices
from stations.runtime import StationProcess
from stations.spool import SpoolError
from stations.usb_ports import UsbMatch, UsbSpecError

log = logging.getLogger(__name__)
# A malformed broker URL (EDGELINE_MQTT_URL). An unreachable broker is no error: the station serves its
# ports and spools events until the broker is back (a station PC often boots before the broker).
EXIT_BAD_BROKER_URL = 3


def register(sub: Any) -> None:
    """Add the `station` command group."""
    station = sub.add_parser("station", help="test-station commands (init, add, run)")
    cmds = station.add_subparsers(dest="station_command", metavar="SUBCOMMAND", required=True)

    init = cmds.add_parser(
        "init",
        help="create this station's key pair and print its public key",
        description="Create the station's X25519 key pair. The private key file is written "
        "with mode 0600 and never leaves the station; give the printed public key to "
        "`edgeline station add` on the pipeline side.",
    )
    init.add_argument("--key-file", required=True, type=Path, help="where to write the private key")
    init.add_argument(
        "--force",
        action="store_true",
        help="overwrite an existing key file (old configs in flight can then no longer be opened)",
    )
    init.set_defaults(func=_init)

    add = cmds.add_parser(
        "add",
        help="register a station (name, line, public key) with the pipeline",
        description="Register a station so the configurer can encrypt configs to it. "
        "Run where EDGELINE_DATABASE_URL points at the pipeline's database.",
    )
    add.add_argument("name", help="station name, as in its topics (letters, digits, '-', '_', '.')")
    add.add_argument("--line", help="production line (default: setting `line`)")
    add.add_argument("--public-key", required=True, help="the text `edgeline station init` printed")
    add_broker_arguments(add)
    add.set_defaults(func=_add)

    run = cmds.add_parser(
        "run",
        help="run a station on real ports or simulated devices",
        description="Serve devices on serial ports: read identity, publish the scan, write "
        "the encrypted config the pipeline sends, verify its SHA-256 by read-back, report PASS "
        "or FAIL. Ports: --port (repeatable; /dev/ttyUSB0, COM3, socket://host:port, "
        "rfc2217://host:port), --usb VID:PID[:SERIAL_GLOB] (repeatable; USB serial adapters "
        "matched every second, hot-plug) and/or --watch-dir (a folder of links to ports; hot-plug). "
        "The station starts even when the MQTT broker is unreachable: it says so in one line, "
        "serves the ports, keeps the events in an on-disk spool (--spool-dir) and keeps connecting; "
        "when the broker is back it announces itself and sends them. "
        "On a terminal a live table shows every port; otherwise one line per result. "
        "Exit codes: 0 stopped cleanly (or every simulated device passed), 1 a device "
        "failed in --simulate mode (or another runtime error), 2 bad usage or settings (also: a "
        "--port that does not exist or is in use), 3 the MQTT broker URL is malformed.",
    )
    _add_run_arguments(run)
    run.set_defaults(func=_run)


def _add_run_arguments(run: argparse.ArgumentParser) -> None:
    run.add_argument("--name", required=True, help="this station's name (must be registered: `station add`)")
    run.add_argument("--line", help="production line (default: setting `line`)")
    run.add_argument("--key-file", required=True, type=Path, help="private key written by `station init`")
    run.add_argument("--port", action="append", default=[], metavar="PORT", help="a serial port (repeatable)")
    run.add_argument("--watch-dir", type=Path, help="folder whose entries are links to ports (hot-plug)")
    run.add_argument(
        "--usb",
        action="append",
        default=[],
        metavar="VID:PID[:SERIAL_GLOB]",
        help="serve USB serial ports with this vendor:product id in hex, optionally only serial "
        "numbers matching a glob, e.g. 0403:6001:FT* (repeatable; case-insensitive; hot-plug)",
    )
    run.add_argument(
        "--spool-dir",
        type=Path,
        help="where events wait while the broker is unreachable (default: KEY_FILE.spool beside the key)",
    )
    run.add_argument(
        "--jsonl", type=Path, metavar="FILE", help="append one JSON object per device result to FILE"
    )
    run.add_argument("--baud", type=int, default=115200, help="serial speed (default 115200)")
    run.add_argument("--batch", help="production batch recorded with each unit")
    run.add_argument(
        "--flash-timeout",
        type=float,
        default=300.0,
        help="seconds to wait for the pipeline's config after a scan (default 300)",
    )
    run.add_argument(
        "--simulate",
        type=int,
        default=0,
        metavar="N",
        help="plug N simulated devices (pseudo-terminals) into --watch-dir, then exit (POSIX only)",
    )
    run.add_argument(
        "--devices-dir", type=Path, help="with --simulate: where simulated devices keep their flash"
    )
    run.add_argument(
        "--fixtures", type=int, default=4, help="with --simulate: devices plugged at once (default 4)"
    )
    run.add_argument(
        "--serial-prefix",
        default="",
        help="with --simulate: prefix of simulated serial numbers (the same prefix gives the same MACs, "
        "so a restarted station re-plugs the same devices)",
    )
    run.add_argument(
        "--sim-hostile",
        metavar="KIND[,KIND...]",
        help="with --simulate: every Nth device misbehaves, taking these kinds in turn: garbage, binary, "
        "long-line, slow, vanish, bad-serial, zero-mac, broadcast-mac, multicast-mac, conflict",
    )
    run.add_argument(
        "--sim-hostile-every",
        type=int,
        default=3,
        metavar="N",
        help="with --sim-hostile: every Nth device (default 3)",
    )
    add_driver_arguments(run)


def _init(args: argparse.Namespace) -> int:
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


def _add(args: argparse.Namespace) -> int:
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
                actor="cli",
                registration_id=None,
                detail={"station": args.name, "line": line},
            )
            uow.commit()
    finally:
        db.dispose()
    print(f"station {args.name} (line {line}) registered")
    write_broker_access(args, line, settings.topic_root)
    return EXIT_OK


def _run(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    if not settings.mqtt_url:
        raise CommandError("mqtt_url (EDGELINE_MQTT_URL) is not set, e.g. mqtt://127.0.0.1:1883", exit_code=2)
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
    )
    _check_ports(args.port)
    fleet = _make_fleet(args) if args.simulate else None
    if fleet is not None:
        fleet.prepare()  # before the station watches the folder: stale links from a killed run go
    stop = stop_event_on_signals()
    output = StationOutput(args.name, jsonl=args.jsonl)
    if fleet is not None:
        output.extra.append(fleet.on_result)
    with output:
        return _serve(args, config, settings, usb, output, fleet, stop)


def _serve(
    args: argparse.Namespace,
    config: StationConfig,
    settings: Settings,
    usb: list[UsbMatch],
    output: StationOutput,
    fleet: SimulatedFleet | None,
    stop: threading.Event,
) -> int:
    from stations.runtime import start_station

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
    from stations.usb_ports import parse_usb_spec

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
    from stations import hostile

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
