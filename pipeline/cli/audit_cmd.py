"""`edgeline audit`: units by state/line/station/time, one unit's timeline, export, chain verification.

Responsible for: argument parsing and presentation (rich table, JSON, CSV) of pipeline.db.audit results.
Not responsible for: the queries themselves (pipeline.db.audit) or writing audit records.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from rich.console import Console
from rich.table import Table

from pipeline.cli.main import EXIT_FAILURE, EXIT_OK, CommandError
from pipeline.config import load_settings
from pipeline.db import audit
from pipeline.db.errors import DatabaseUnavailable, SchemaMissing
from pipeline.db.session import Database

TABLE_COLUMNS = (
    "registration_id",
    "serial",
    "mac",
    "line",
    "station",
    "state",
    "device_id",
    "assigned_hub",
    "failure_reason",
    "updated_at",
)


def register(sub: Any) -> None:
    """Add the `audit` command group."""
    parser = sub.add_parser("audit", help="audit queries and hash-chain verification")
    audit_sub = parser.add_subparsers(dest="audit_command", metavar="SUBCOMMAND", required=True)
    units = audit_sub.add_parser(
        "units",
        help="list units by state, station, line and time",
        description="List units; --since/--until bound the time of their last change.",
    )
    _add_filters(units)
    units.add_argument("--limit", type=int, default=None, help="at most this many units")
    _add_format(units, ("table", "json", "csv"), "table")
    units.set_defaults(func=_units)
    unit = audit_sub.add_parser(
        "unit",
        help="one unit and its audit trail",
        description="Show a unit found by registration ID, serial or MAC (any format).",
    )
    unit.add_argument("key", metavar="REGISTRATION_ID|SERIAL|MAC")
    _add_format(unit, ("table", "json"), "table")
    unit.set_defaults(func=_unit)
    verify = audit_sub.add_parser("verify", help="verify the audit log's hash chain (exit 1 if broken)")
    verify.set_defaults(func=_verify)
    export = audit_sub.add_parser("export", help="export units or audit records as CSV or JSON")
    export.add_argument("--what", choices=("units", "records"), default="units", help="what to export")
    _add_filters(export)
    _add_format(export, ("csv", "json"), "csv")
    export.add_argument("--output", metavar="FILE", help="write here instead of stdout")
    export.set_defaults(func=_export)
    _register_check(audit_sub)


def _add_filters(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--state", help="e.g. assigned, failed, flashed")
    parser.add_argument("--station", help="station name")
    parser.add_argument("--line", help="line name")
    parser.add_argument("--since", type=_timestamp, help="ISO 8601 time (UTC if no zone), inclusive")
    parser.add_argument("--until", type=_timestamp, help="ISO 8601 time (UTC if no zone), exclusive")


def _add_format(parser: argparse.ArgumentParser, choices: tuple[str, ...], default: str) -> None:
    parser.add_argument(
        "--format", choices=choices, default=default, help=f"output format (default: {default})"
    )


def _timestamp(text: str) -> datetime:
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not an ISO 8601 time, e.g. 2026-11-30T08:00:00Z"
        ) from None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


@contextmanager
def _database(args: argparse.Namespace) -> Iterator[Database]:
    settings = load_settings(Path(args.config) if args.config else None)
    db = Database(settings.resolved_database_url())
    try:
        yield db
    except (DatabaseUnavailable, SchemaMissing) as exc:
        raise CommandError(str(exc)) from None
    finally:
        db.dispose()


def _units(args: argparse.Namespace) -> int:
    with _database(args) as db:
        units = audit.units_query(
            db,
            state=args.state,
            station=args.station,
            line=args.line,
            since=args.since,
            until=args.until,
            limit=args.limit,
        )
    if args.format == "json":
        audit.write_json(units, sys.stdout)
    elif args.format == "csv":
        audit.write_csv(units, sys.stdout)
    else:
        _print_table(f"{len(units)} unit(s)", TABLE_COLUMNS, [u.to_dict() for u in units])
    return EXIT_OK


def _unit(args: argparse.Namespace) -> int:
    with _database(args) as db:
        timeline = audit.unit_timeline(db, args.key)
    if timeline is None:
        raise CommandError(f"no unit with registration ID, serial or MAC {args.key!r}")
    unit, records = timeline.unit.to_dict(), [r.to_dict() for r in timeline.records]
    if args.format == "json":
        json.dump({"unit": unit, "records": records}, sys.stdout, indent=2, ensure_ascii=False)
        sys.stdout.write("\n")
        return EXIT_OK
    _print_table(
        f"unit {unit['registration_id']}",
        ("field", "value"),
        [{"field": k, "value": v} for k, v in unit.items()],
    )
    _print_table(f"{len(records)} audit record(s)", ("id", "at", "kind", "actor", "detail"), records)
    return EXIT_OK


def _verify(args: argparse.Namespace) -> int:
    with _database(args) as db:
        report = audit.verify_chain(db)
    if report.ok:
        print(f"audit chain ok: {report.checked} record(s) verified")
        return EXIT_OK
    print(
        f"audit chain BROKEN at record {report.first_bad_id}: {report.reason} "
        f"({report.checked} record(s) verified before it)",
        file=sys.stderr,
    )
    return EXIT_FAILURE


def _export(args: argparse.Namespace) -> int:
    with _database(args) as db:
        items: list[Any]
        if args.what == "records":
            items = audit.audit_records(db, since=args.since, until=args.until)
        else:
            items = audit.units_query(
                db, state=args.state, station=args.station, line=args.line, since=args.since, until=args.until
            )
    with _output(args.output) as stream:
        (audit.write_json if args.format == "json" else audit.write_csv)(items, stream)
    if args.output:
        print(f"exported {len(items)} {args.what} to {args.output}", file=sys.stderr)
    return EXIT_OK


@contextmanager
def _output(path: str | None) -> Iterator[IO[str]]:
    if path is None:
        yield sys.stdout
        return
    try:
        with open(path, "w", encoding="utf-8", newline="") as stream:
            yield stream
    except OSError as exc:
        raise CommandError(f"--output {path}: {exc.strerror}") from None


def _print_table(title: str, columns: tuple[str, ...], rows: list[dict[str, Any]]) -> None:
    table = Table(title=title)
    for column in columns:
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(*("" if row.get(c) is None else str(row.get(c)) for c in columns))
    # A pipe gets whole rows, not 80-column wraps.
    Console(width=None if sys.stdout.isatty() else 250).print(table)


# --- faults: `audit check`, the invariant checker ---
CHECK_HELP = (
    "Check the line's invariants against DPS and the IoT hub: every unit in one known state that its "
    "audit trail and DPS agree with, one enrollment per registration ID, nothing flashed or assigned "
    "without a verified read-back, no transition applied twice, an intact hash chain, a drained outbox. "
    "Prints one line per violation (unit, rule, what to do) and a summary; exit 1 on any violation. "
    "Run it on a line at rest (units still moving are reported as behind). Reads only."
)


def _register_check(audit_sub: Any) -> None:
    check = audit_sub.add_parser(
        "check", help="check the line's invariants (exit 1 on a violation)", description=CHECK_HELP
    )
    _add_format(check, ("text", "json"), "text")
    check.set_defaults(func=_check)


def _check(args: argparse.Namespace) -> int:
    from pipeline.azure.ports import AzureError
    from pipeline.bootstrap import make_dps_client, make_hub_registry
    from pipeline.config import ConfigError
    from pipeline.db.invariants import load_snapshot
    from pipeline.service.cloud_state import AzureCloudState
    from pipeline.service.invariants import check

    settings = load_settings(Path(args.config) if args.config else None)
    try:
        dps, hub = make_dps_client(settings), make_hub_registry(settings)
    except ConfigError as exc:
        raise CommandError(str(exc), exit_code=2) from None
    try:
        with _database(args) as db:
            report = check(load_snapshot(db), AzureCloudState(dps, hub))
    except AzureError as exc:
        raise CommandError(f"DPS or IoT hub: {exc}") from None
    finally:
        dps.close()
    if args.format == "json":
        json.dump(report.to_dict(), sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        for violation in report.violations:
            print(violation.line())
        for note in report.notes:
            print(f"note: {note}")
        print(report.summary())
    return EXIT_OK if report.ok else EXIT_FAILURE
