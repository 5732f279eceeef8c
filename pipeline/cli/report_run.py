"""The runners of this command (arguments: pipeline.cli.report_cmd); imported only when it runs.

`edgeline report shift`: write a shift report (CSV + HTML) for a time window, on demand.

Responsible for: arguments and output paths. The same report is written by `edgeline web` at every
shift boundary (setting `shift_boundaries`, into `report_dir`).
Not responsible for: the statistics or rendering (pipeline.reports.shift).
"""

from __future__ import annotations

import argparse
import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from pipeline.cli.common import settings_from
from pipeline.cli.main import EXIT_OK, CommandError
from pipeline.config import Settings
from pipeline.db.errors import DatabaseUnavailable, SchemaMissing
from pipeline.db.report_queries import units_scanned_between
from pipeline.db.session import Database
from pipeline.reports import shift

if TYPE_CHECKING:
    from pipeline.scheduler.jobs import DailyJobs

log = logging.getLogger(__name__)


def report_dir(settings: Settings) -> Path:
    """Where shift reports go."""
    return Path(settings.report_dir) if settings.report_dir else settings.state_dir / "reports"


def write_shift_report(db: Database, since: datetime, until: datetime, directory: Path) -> tuple[Path, Path]:
    """Build and write the report of [since, until)."""
    report = shift.build(units_scanned_between(db, since, until), since, until)
    return shift.write(report, directory)


def _shift(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    now = datetime.now(UTC)
    if args.since is None:
        try:
            since, until = shift.last_shift(now, shift.parse_boundaries(settings.shift_boundaries))
        except shift.ShiftError as exc:
            raise CommandError(str(exc), exit_code=2) from None
    else:
        since, until = args.since, args.until or now
    if since >= until:
        raise CommandError("--since must be before --until", exit_code=2)
    db = Database(settings.resolved_database_url())
    try:
        paths = write_shift_report(db, since, until, args.output_dir or report_dir(settings))
    except (DatabaseUnavailable, SchemaMissing) as exc:
        raise CommandError(str(exc)) from None
    except OSError as exc:
        raise CommandError(f"cannot write the report: {exc.strerror} ({exc.filename})") from None
    finally:
        db.dispose()
    for path in paths:
        print(path)
    return EXIT_OK


def schedule_shift_reports(db: Database, settings: Settings) -> DailyJobs:
    """Write the finished shift's report at every boundary (call `.stop()` at shutdown)."""
    from pipeline.scheduler.jobs import start_daily_jobs

    boundaries = shift.parse_boundaries(settings.shift_boundaries)
    directory = report_dir(settings)

    def job() -> None:
        since, until = shift.last_shift(datetime.now(UTC), boundaries)
        paths = write_shift_report(db, since, until, directory)
        log.info("shift report written: %s", ", ".join(str(p) for p in paths))

    return start_daily_jobs([("shift-report", b.hour, b.minute, job) for b in boundaries])
