"""`edgeline doctor`: checks settings, broker, database, DPS and IoT hubs; every problem at once."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline.cli.main import EXIT_FAILURE, EXIT_OK
from pipeline.config import Settings, load_settings_reporting

if TYPE_CHECKING:
    from pipeline.service.context import Context


def register(sub: Any) -> None:
    """Add the `doctor` command."""
    parser = sub.add_parser(
        "doctor",
        help="check settings, broker, database, DPS and IoT hubs before running the line",
        description="Check what `edgeline up` needs: every setting; the broker (reachable, login, whether "
        "it drops queued messages, where $SYS is readable); the database (reachable, schema at head, "
        "PostgreSQL autovacuum on); "
        "DPS (reachable, credentials, the stored group key matching DPS's, the device endpoint "
        "belonging to the service, this host's clock against DPS's); each IoT hub. Changes nothing. "
        "Prints one line per problem with what to do; exit 1 if there is any (warnings do not count).",
    )
    parser.set_defaults(func=_doctor)


def _open(settings: Settings) -> tuple[Context, Callable[[], None]]:
    from pipeline.bootstrap import open_admin

    session = open_admin(settings)
    return session.ctx, session.close


def _doctor(args: argparse.Namespace) -> int:
    from pipeline.doctor.checks import Problem, run_all

    config = Path(args.config) if getattr(args, "config", None) else None
    settings, invalid = load_settings_reporting(config)  # invalid values: reported, defaults used
    problems = [Problem(text) for text in invalid] + run_all(settings, _open)
    for problem in problems:
        print(f"{'warning' if problem.warning else 'problem'}: {problem.text}")
    failures = [p for p in problems if not p.warning]
    print(f"edgeline doctor: {len(failures)} problem(s), {len(problems) - len(failures)} warning(s)")
    return EXIT_FAILURE if failures else EXIT_OK
