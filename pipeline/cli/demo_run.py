"""The runner of `edgeline demo` (arguments: pipeline.cli.demo_cmd): live progress and a summary."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from rich.console import Console
from rich.live import Live
from rich.table import Table

from pipeline.cli.common import settings_from
from pipeline.cli.live_logs import logs_above
from pipeline.cli.main import EXIT_FAILURE, EXIT_OK, CommandError
from pipeline.config import Settings
from pipeline.demo import DemoError, DemoOptions, DemoReport, Snapshot, run_demo
from pipeline.domain.model import UnitState

STATES = [s.value for s in UnitState]


def demo(args: argparse.Namespace) -> int:
    """Run the simulated line; exit 0 only if every unit reached `assigned`."""
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
        approval=args.approval,
        with_database=None if args.no_web else _dashboard(args.web),
    )
    console = Console(stderr=True)
    console.print(
        f"edgeline demo: {args.units} unit(s) on {args.stations} station(s), "
        f"{settings.enrollment_mode} enrollment, "
        f"broker {'embedded' if not settings.mqtt_url else 'configured'}"
    )
    try:
        report = _run_with_progress(console, settings, options, args.units)
    except DemoError as exc:
        raise CommandError(str(exc)) from None
    Console().print(_summary_table(report))
    _print_where(report, Console())
    if not report.ok:
        print(
            f"edgeline demo: {report.counts.get(report.target, 0)} of {report.units} units {report.target}",
            file=sys.stderr,
        )
        return EXIT_FAILURE
    return EXIT_OK


def _run_with_progress(console: Console, settings: Settings, options: DemoOptions, units: int) -> DemoReport:
    """Run the demo with a live table on a terminal (log lines above it), else plain progress lines."""
    if not console.is_terminal:
        return run_demo(settings, options, _plain_progress(units))
    with (
        Live(_progress_table(None, units), console=console, refresh_per_second=4) as live,
        logs_above(console),
    ):
        return run_demo(settings, options, lambda snap: live.update(_progress_table(snap, units)))


def _print_where(report: DemoReport, console: Console) -> None:
    """Say where the units are recorded and how to look at them."""
    if report.database_url.startswith("sqlite:///"):
        where = report.database_url.removeprefix("sqlite:///")
        console.print(
            f"units recorded in {where}; query them from this folder:", highlight=False, soft_wrap=True
        )
    else:
        console.print("units recorded in the configured database (database_url); query them:", soft_wrap=True)
    example = report.registration_ids[0] if report.registration_ids else "REGISTRATION_ID"
    console.print(
        f"  edgeline audit units\n  edgeline audit unit {example}",
        highlight=False,
        markup=False,
        soft_wrap=True,
    )


def _progress_table(snap: Snapshot | None, units: int) -> Table:
    """Counts by state, one row each: narrow enough for an 80-column terminal."""
    table = Table(title=f"edgeline demo — {units} units by state", expand=False)
    table.add_column("state")
    table.add_column("units", justify="right")
    counts = snap.counts if snap else {}
    for state in STATES:
        table.add_row(state, str(counts.get(state, 0)))
    table.add_row("station FAIL", str(snap.failed_results) if snap else "-")
    table.add_row("elapsed", f"{snap.elapsed:.1f} s" if snap else "-")
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


def _dashboard(listen: str) -> Any:
    """The demo's dashboard hook: `edgeline web` in-process on the demo's database, its link printed."""
    from pipeline.web.server import dashboard_in_background, parse_listen

    try:
        host, port = parse_listen(listen, "--web", any_port=True)
    except ValueError as exc:
        raise CommandError(str(exc), exit_code=2) from None

    def start(settings: Any) -> Any:
        return dashboard_in_background(
            settings.resolved_database_url(),
            host=host,
            port=port,
            stuck_seconds=settings.reconcile_stuck_seconds,
            announce=lambda url: print(f"edgeline demo: dashboard at {url}", file=sys.stderr, flush=True),
        )

    return start
