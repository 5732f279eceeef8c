"""`edgeline unit release KEY --reason TEXT`: allow one rework of an assigned unit or another station's unit.

Responsible for: argument parsing, naming the operator (OS user@host) and printing the outcome.
Not responsible for: the rules (pipeline.service.admission) or the release itself (pipeline.service.release).
"""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from typing import Any

from pipeline.cli.common import settings_from
from pipeline.cli.main import EXIT_OK, CommandError

RELEASE_HELP = (
    "Allow the next scan of the unit, at any station or line, to rework it (new config flashed, same "
    "identity and enrollment); that station then owns the unit. Needed for an assigned unit (unless "
    "rework_assigned = allow) and for moving a unit in flight to another station; a quarantined unit is "
    "released the same way once a human has decided. The release and its reason are audited with the "
    "operator as OS user@host."
)


def register(sub: Any) -> None:
    """Add the `unit` command group."""
    parser = sub.add_parser(
        "unit",
        help="operator actions on one unit",
        description="Operator decisions about one unit that the line will not take by itself, each recorded "
        "in the audit log with the operator's user and host.",
    )
    unit_sub = parser.add_subparsers(dest="unit_command", metavar="SUBCOMMAND", required=True)
    release = unit_sub.add_parser("release", help="release a unit for rework", description=RELEASE_HELP)
    release.add_argument("key", metavar="REGISTRATION_ID|SERIAL|MAC")
    release.add_argument("--reason", required=True, help="why the unit is reworked (kept in the audit log)")
    release.set_defaults(func=_release)


def _release(args: argparse.Namespace) -> int:
    from pipeline.db.errors import DatabaseUnavailable, SchemaMissing
    from pipeline.db.session import Database
    from pipeline.service.actors import cli_identity
    from pipeline.service.release import ReleaseError, release_for_rework

    settings = settings_from(args)
    db = Database(settings.resolved_database_url())
    try:
        done = release_for_rework(
            db.uow, args.key, reason=args.reason, operator=cli_identity(), now=datetime.now(UTC)
        )
    except (ReleaseError, DatabaseUnavailable, SchemaMissing) as exc:
        raise CommandError(str(exc)) from None
    finally:
        db.dispose()
    note = " (it was already released)" if done.already else ""
    print(
        f"unit {done.registration_id} ({done.state}, last scanned at {done.owner}) released for "
        f"rework{note}: the next scan at any station reworks it"
    )
    return EXIT_OK
