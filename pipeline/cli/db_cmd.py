"""`edgeline db upgrade` / `edgeline db current`: apply and inspect the schema migrations.

Responsible for: running pipeline.db.migrate against the configured database and saying what happened.
Not responsible for: creating the PostgreSQL server or database (the operator's job).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from pipeline.cli.main import EXIT_OK, CommandError
from pipeline.config import load_settings
from pipeline.db import migrate
from pipeline.db.engine import mask_url
from pipeline.db.errors import DatabaseUnavailable


def register(sub: Any) -> None:
    """Add the `db` command group."""
    parser = sub.add_parser("db", help="database schema migrations")
    db_sub = parser.add_subparsers(dest="db_command", metavar="SUBCOMMAND", required=True)
    upgrade = db_sub.add_parser(
        "upgrade",
        help="apply migrations (default: up to the newest)",
        description="Apply schema migrations to the database of database_url "
        "(EDGELINE_DATABASE_URL; default: a SQLite file in the state directory).",
    )
    upgrade.add_argument("revision", nargs="?", default="head", help="target revision (default: head)")
    upgrade.set_defaults(func=_upgrade)
    current = db_sub.add_parser("current", help="print the database's schema revision")
    current.set_defaults(func=_current)


def _url(args: argparse.Namespace) -> str:
    return load_settings(Path(args.config) if args.config else None).resolved_database_url()


def _upgrade(args: argparse.Namespace) -> int:
    url = _url(args)
    try:
        before = migrate.current(url)
        migrate.upgrade(url, args.revision)
        after = migrate.current(url)
    except (DatabaseUnavailable, migrate.MigrationsNotFound) as exc:
        raise CommandError(str(exc)) from None
    where = mask_url(url)
    if before == after:
        print(f"{where}: already at revision {after or 'base'}, nothing to do")
    else:
        print(f"{where}: upgraded from {before or 'empty database'} to {after}")
    return EXIT_OK


def _current(args: argparse.Namespace) -> int:
    url = _url(args)
    try:
        revision = migrate.current(url)
    except DatabaseUnavailable as exc:
        raise CommandError(str(exc)) from None
    head = migrate.head()
    status = "up to date" if revision == head else f"behind: newest is {head}, run `edgeline db upgrade`"
    print(f"{mask_url(url)}: revision {revision or 'none (never migrated)'} ({status})")
    return EXIT_OK
