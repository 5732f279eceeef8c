"""`edgeline demo`: run a simulated line end to end and show live progress and a summary."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.live import Live
from rich.table import Table

from pipeline.cli.common import settings_from
from pipeline.cli.main import EXIT_FAILURE, EXIT_OK, CommandError
from pipeline.demo import DemoOptions, DemoReport, Snapshot, run_demo
from pipeline.domain.model import UnitState

STATES = [s.value for s in UnitState]


def register(sub: Any) -> None:
    """Add the `demo` command."""
    parser = sub.add_parser(
        "demo",
        help="run a whole simulated line (stations, devices, workers, DPS emulator) and report",
        description="Run K stations with N simulated devices on pseudo-terminals through every stage: scan, "
        "key, "
        "DPS enrollment, encrypted config flash with read-back, device registration with DPS, assignment. "
        "Uses EDGELINE_DATABASE_URL and EDGELINE_MQTT_URL if set, else a temporary SQLite file and an "
        "embedded "
        "broker; always the built-in DPS + IoT Hub emulator. Exits 0 only if every unit reached `assigned`.",
    )
    parser.add_argument("--units", type=int, default=10, help="simulated devices (default 10)")
    parser.add_argument("--stations", type=int, default=2, help="stations (default 2)")
    parser.add_argument(
        "--fixtures", type=int, default=4, help="devices plugged into a station at once (default 4)"
    )
    parser.add_argument(
        "--mode", choices=["group", "individual"], help="enrollment mode (default: setting, group)"
    )
    parser.add_argument(
        "--edge-version", choices=["1.2", "1.1"], help="IoT Edge config flavour (default 1.2)"
    )
    parser.add_argument(
        "--keep-devices",
        type=Path,
        metavar="DIR",
        help="keep each device's flashed files in DIR/<registration id>/",
    )
    parser.add_argument("--baud", type=int, help="pace simulated serial lines like a UART at this baud rate")
    parser.add_argument(
        "--timeout",
        type=float,
        help="give up after this many seconds (default: 1.5 s per unit, at least 120)",
    )
    parser.set_defaults(func=_demo)


def _demo(args: argparse.Namespace) -> int:
    if args.units < 1 or args.stations < 1 or args.fixtures < 1:
        raise CommandError("--units, --stations and --fixtures must be at least 1", exit_code=2)
    settings = settings_from(args, enrollment_mode=args.mode, edge_version=args.edge_version)
    options = DemoOptions(
        units=args.units,
        stations=args.stations,
        fixtures=args.fixtures,
        keep_devices=args.keep_devices.resolve() if args.keep_devices else None,
        timeout=args.timeout,
        baud=args.baud,
    )
    console = Console(stderr=True)
    console.print(
        f"edgeline demo: {args.units} unit(s) on {args.stations} station(s), "
        f"{settings.enrollment_mode} enrollment, "
        f"broker {'embedded' if not settings.mqtt_url else 'configured'}"
    )
    if console.is_terminal:
        with Live(_progress_table(None, args.units), console=console, refresh_per_second=4) as live:
            report = run_demo(settings, options, lambda snap: live.update(_progress_table(snap, args.units)))
    else:
        report = run_demo(settings, options, _plain_progress(args.units))
    Console().print(_summary_table(report))
    if not report.ok:
        print(
            f"edgeline demo: {report.counts.get(report.target, 0)} of {report.units} units {report.target}",
            file=sys.stderr,
        )
        return EXIT_FAILURE
    return EXIT_OK


def _progress_table(snap: Snapshot | None, units: int) -> Table:
    table = Table(title="edgeline demo — units by state", expand=False)
    for state in STATES:
        table.add_column(state, justify="right")
    table.add_column("station FAIL", justify="right")
    table.add_column("elapsed", justify="right")
    counts = snap.counts if snap else {}
    table.add_row(
        *[str(counts.get(s, 0)) for s in STATES],
        str(snap.failed_results) if snap else "-",
        f"{snap.elapsed:.1f} s" if snap else "-",
    )
    return table


def _plain_progress(units: int) -> Any:
    last = {"printed": -10.0}

    def show(snap: Snapshot) -> None:
        if snap.elapsed - last["printed"] >= 2.0:
            last["printed"] = snap.elapsed
            parts = ", ".join(f"{s} {snap.counts[s]}" for s in STATES if snap.counts.get(s))
            print(
                f"[{snap.elapsed:6.1f} s] {parts or 'waiting for scans'} (of {units})"
                + (f"; {snap.failed_results} station FAIL(s)" if snap.failed_results else ""),
                file=sys.stderr,
                flush=True,
            )

    return show


def _summary_table(report: DemoReport) -> Table:
    table = Table(
        title=f"edgeline demo — {'PASS' if report.ok else 'FAIL'}: "
        f"{report.counts.get(report.target, 0)}/{report.units} {report.target} in {report.elapsed:.1f} s"
    )
    table.add_column("station")
    table.add_column("PASS", justify="right")
    table.add_column("FAIL", justify="right")
    table.add_column("first failure reason")
    by_station: dict[str, list[Any]] = {}
    for result in report.station_results:
        by_station.setdefault(result.station, []).append(result)
    for station, results in sorted(by_station.items()):
        failed = [r for r in results if r.outcome != "PASS"]
        table.add_row(
            station, str(len(results) - len(failed)), str(len(failed)), failed[0].reason if failed else ""
        )
    table.caption = "units by state: " + ", ".join(f"{k} {v}" for k, v in sorted(report.counts.items()))
    return table
