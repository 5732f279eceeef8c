"""The runners of `edgeline audit` (arguments: pipeline.cli.audit_cmd); imported only when one runs.

Responsible for: checking filters against the database (a line or station that is not there is an
error naming those that are), and presenting pipeline.db.audit results: a compact rich table that
fits an 80-120 column terminal, or every field as JSON/CSV.
Not responsible for: the queries themselves (pipeline.db.audit).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import IO, Any

from rich import box
from rich.console import Console
from rich.table import Table

from pipeline.cli.common import settings_from
from pipeline.cli.main import EXIT_FAILURE, EXIT_OK, CommandError
from pipeline.db import audit
from pipeline.db.errors import DatabaseUnavailable, SchemaMissing
from pipeline.db.session import Database

# The way to `assigned`, with the letter each stage's duration is shown with in the table.
STAGES = (("keyed", "k"), ("enrolled", "e"), ("config_issued", "c"), ("flashed", "f"), ("assigned", "a"))
FAILURE_WIDTH = 28
PIPE_WIDTH = 120  # a pipe or file gets 120-column rows (rich would otherwise assume 80)
NARROW = 110


@contextmanager
def _database(args: argparse.Namespace) -> Iterator[Database]:
    db = Database(settings_from(args).resolved_database_url())
    try:
        yield db
    except (DatabaseUnavailable, SchemaMissing) as exc:
        raise CommandError(str(exc)) from None
    finally:
        db.dispose()


def _check_filters(db: Database, args: argparse.Namespace) -> None:
    """An unknown --line or --station is an error naming the ones in the database (not an empty list)."""
    for column in ("line", "station"):
        wanted = getattr(args, column, None)
        if wanted is None:
            continue
        present = audit.present_values(db, column)
        if wanted not in present:
            known = ", ".join(present) if present else "none: the database has no units yet"
            raise CommandError(f"no unit has --{column} {wanted!r}; {column}s in the database: {known}", 2)


def _query(db: Database, args: argparse.Namespace, limit: int | None = None) -> list[audit.UnitView]:
    _check_filters(db, args)
    return audit.units_query(
        db,
        state=args.state,
        station=args.station,
        line=args.line,
        since=args.since,
        until=args.until,
        limit=limit,
        overdue=args.overdue,
    )


def units(args: argparse.Namespace) -> int:
    """List units as a compact table, JSON or CSV."""
    with _database(args) as db:
        found = _query(db, args, args.limit)
    if args.format == "json":
        audit.write_json(found, sys.stdout)
    elif args.format == "csv":
        audit.write_csv(found, sys.stdout)
    else:
        console = _console()
        console.print(units_table(found, console.width))
    return EXIT_OK


def units_table(found: list[audit.UnitView], width: int = PIPE_WIDTH) -> Table:
    """The compact view: who, where, how far, how long each stage took, why it failed (shortened).

    Narrower than NARROW columns, the serial column is left out when every registration ID already
    contains the serial (the default template `sn-{serial}-mac-{mac}` does).
    """
    serial_column = width >= NARROW or any(u.serial.lower() not in u.registration_id for u in found)
    table = Table(
        title=f"{len(found)} unit(s)",
        caption="stages: seconds to k(eyed) e(nrolled) c(onfig issued) f(lashed) a(ssigned); "
        "every field: --format json|csv",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
        padding=(0, 1, 0, 0),
    )
    # Identity and state never wrap; stage times and the (already shortened) reason give way first.
    table.add_column("registration id", no_wrap=True)
    if serial_column:
        table.add_column("serial", no_wrap=True)
    table.add_column("state", no_wrap=True)
    table.add_column("station", no_wrap=True)
    table.add_column("stages")
    table.add_column("failure")
    for unit in found:
        cells = [unit.registration_id, *([unit.serial] if serial_column else []), unit.state, unit.station]
        table.add_row(
            *cells,
            stage_durations(unit.stage_times),
            _shorten(unit.failure_reason or unit.assignment_overdue_reason or "", FAILURE_WIDTH),
        )
    return table


def stage_durations(times: dict[str, datetime | None]) -> str:
    """`k0.2 e1.1 f4.0`: seconds from the previous reached stage to each stage, from the scan on."""
    previous = times.get("scanned")
    parts = []
    for stage, letter in STAGES:
        when = times.get(stage)
        if when is None or previous is None:
            continue
        parts.append(f"{letter}{_compact_seconds((when - previous).total_seconds())}")
        previous = when
    return " ".join(parts) or "-"


def _compact_seconds(seconds: float) -> str:
    if seconds < 10:
        return f"{max(seconds, 0.0):.1f}"
    if seconds < 600:
        return f"{seconds:.0f}"
    if seconds < 36000:
        return f"{seconds / 60:.0f}m"
    return f"{seconds / 3600:.0f}h"


def _shorten(text: str, width: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def unit(args: argparse.Namespace) -> int:
    """Show one unit and its audit trail."""
    with _database(args) as db:
        timeline = audit.unit_timeline(db, args.key)
    if timeline is None:
        raise CommandError(f"no unit with registration ID, serial or MAC {args.key!r}")
    found, records = timeline.unit.to_dict(), [r.to_dict() for r in timeline.records]
    if args.format == "json":
        json.dump({"unit": found, "records": records}, sys.stdout, indent=2, ensure_ascii=False)
        sys.stdout.write("\n")
        return EXIT_OK
    _print_table(
        f"unit {found['registration_id']}",
        ("field", "value"),
        [{"field": k, "value": v} for k, v in found.items()],
    )
    _print_table(f"{len(records)} audit record(s)", ("id", "at", "kind", "actor", "detail"), records)
    return EXIT_OK


def verify(args: argparse.Namespace) -> int:
    """Verify the audit log's hash chain."""
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


def export(args: argparse.Namespace) -> int:
    """Export units or audit records as CSV or JSON."""
    with _database(args) as db:
        items: list[Any]
        if args.what == "records":
            items = audit.audit_records(db, since=args.since, until=args.until)
        else:
            items = _query(db, args)
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


def _console() -> Console:
    return Console(width=None if sys.stdout.isatty() else PIPE_WIDTH)


def _print_table(title: str, columns: tuple[str, ...], rows: list[dict[str, Any]]) -> None:
    table = Table(title=title)
    for column in columns:
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(*("" if row.get(c) is None else str(row.get(c)) for c in columns))
    _console().print(table)


def check(args: argparse.Namespace) -> int:
    """Check the line's invariants against DPS and the hub; exit 1 on a violation."""
    from pipeline.azure.ports import AzureError
    from pipeline.bootstrap import make_dps_client, make_hub_registry
    from pipeline.config import ConfigError
    from pipeline.db.invariants import load_snapshot
    from pipeline.service.cloud_state import AzureCloudState
    from pipeline.service.invariants import check as check_invariants

    settings = settings_from(args)
    try:
        dps, hub = make_dps_client(settings), make_hub_registry(settings)
    except ConfigError as exc:
        raise CommandError(str(exc), exit_code=2) from None
    try:
        with _database(args) as db:
            report = check_invariants(load_snapshot(db), AzureCloudState(dps, hub))
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
